"""What the default scenario leaves on each host, checked on the host itself."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import yaml

TOP = pathlib.Path(__file__).resolve().parents[3]
WANTED_VERSION = yaml.safe_load((TOP / "roles/arc_agent/defaults/main.yml").read_text())["arc_agent_version"]
TESTHOSTS = str(TOP / "tests/hosts/testhosts.sh")


def _testhosts(*args: str) -> str:
    return subprocess.run([TESTHOSTS, *args], check=True, capture_output=True, text=True).stdout.strip()


def _controlplane(what: str) -> str:
    return _testhosts("controlplane", what)


def test_host_runs_systemd_as_pid_1(host):
    assert host.check_output("ps -p 1 -o comm=") == "systemd"
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    why = "systemctl --failed --no-legend; journalctl -b -p warning --no-pager | tail -20"
    assert state == "running", host.run(why).stdout


def test_host_is_isolated_on_the_test_network(host):
    routes = host.check_output("ip route")
    assert "default" not in routes
    assert f"{json.loads(_testhosts('env'))['net']}.0/24 dev eth0" in routes


def test_runtime_is_its_own_virtual_environment(host):
    prefix = host.file("/opt/azcmagent")
    assert prefix.is_directory
    assert prefix.user == "root" and prefix.group == "root"
    assert prefix.mode == 0o755
    assert host.file("/opt/azcmagent/pyvenv.cfg").is_file
    # --without-pip: nothing on the host can change the runtime behind the role's back
    assert not host.file("/opt/azcmagent/bin/pip").exists
    # and the system Python does not see the agent's packages
    assert host.run("/usr/bin/python3 -c 'import arc_agent'").rc != 0


def test_cli_is_linked_and_answers(host):
    link = host.file("/usr/bin/azcmagent")
    assert link.is_symlink
    # (linked_to would resolve the whole chain, through /opt/azcmagent/current)
    assert host.check_output("readlink /usr/bin/azcmagent") == "/opt/azcmagent/bin/azcmagent"
    assert host.check_output("azcmagent version") == f"azcmagent version {WANTED_VERSION}"
    assert json.loads(host.check_output("azcmagent version --json")) == {"version": WANTED_VERSION}


def test_the_version_is_in_its_own_folder_and_current_says_which(host):
    record = json.loads(host.check_output("cat /opt/azcmagent/package.json"))
    name = f"{WANTED_VERSION}-{record['sha256'][:12]}"
    assert host.check_output("readlink /opt/azcmagent/current") == f"versions/{name}"
    assert host.check_output("ls /opt/azcmagent/versions") == name
    for entry in ("bin", "lib", "pyvenv.cfg", "package.json"):
        assert host.check_output(f"readlink /opt/azcmagent/{entry}") == f"current/{entry}"


def test_himds_program_is_installed(host):
    himds = host.file("/opt/azcmagent/bin/himds")
    assert himds.is_file and himds.mode & 0o111
    assert host.check_output("/opt/azcmagent/bin/himds --version") == f"himds version {WANTED_VERSION}"


def test_the_runtime_came_from_the_archive_for_the_hosts_python_which_is_gone(host):
    bundle = TOP / "build" / "wheelhouse"
    minor = host.check_output("python3 -c 'import sys; print(sys.version_info[1])'")
    chosen = json.loads((bundle / "targets.json").read_text())["targets"][f"cp3{minor}-x86_64"]
    sums = dict(reversed(line.split()) for line in (bundle / "SHA256SUMS").read_text().splitlines())
    assert chosen["sha256"] == sums[chosen["archive"]]
    record = json.loads(host.check_output("cat /opt/azcmagent/package.json"))
    assert record == {"archive": chosen["archive"], "sha256": chosen["sha256"], "version": WANTED_VERSION}
    # no copy of the archive and no unpacked runtime is left beside the one in use
    assert not host.file("/var/cache/azcmagent").exists
    assert [name for name in host.check_output("ls -A /opt").split() if "azcmagent" in name] == ["azcmagent"]
    # byte-compiled by the host's Python, under the names the sources have at /opt/azcmagent
    cached = f"/opt/azcmagent/lib/python3.{minor}/site-packages/arc_agent/__pycache__"
    assert host.file(f"{cached}/__init__.cpython-3{minor}.pyc").is_file
    assert host.run(f"grep -c /opt/azcmagent/lib {cached}/__init__.cpython-3{minor}.pyc").rc == 0
    # the host's own Python, as python3 -m venv links it (linked_to would resolve the whole chain)
    assert host.check_output("readlink /opt/azcmagent/bin/python3") == "/usr/bin/python3"


def test_control_plane_answers_over_tls_with_its_own_ca(host):
    url = _controlplane("url") + "/healthz"
    ca_pem = pathlib.Path(_controlplane("ca")).read_text()
    probe = (
        "import json, ssl, sys, urllib.request\n"
        "ctx = ssl.create_default_context(cadata=sys.stdin.read())\n"
        f"print(json.load(urllib.request.urlopen({url!r}, context=ctx, timeout=5))['status'])\n"
    )
    result = host.run(f"python3 -c {_quote(probe)} <<'PEM'\n{ca_pem}PEM")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "ok"
    # The system trust store does not know the control plane's CA: TLS is real.
    refused = host.run(
        f"python3 -c {_quote(f'import urllib.request; urllib.request.urlopen({url!r}, timeout=5)')}"
    )
    assert refused.rc != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def test_himds_runs_as_its_own_user_on_loopback_only(host):
    user = host.user("himds")
    assert user.exists and user.group == "himds" and user.shell == "/usr/sbin/nologin"
    service = host.service("himdsd")
    assert service.is_running and service.is_enabled
    assert host.check_output("ps -C himds -o user= | sort -u") == "himds"
    assert host.socket("tcp://127.0.0.1:40342").is_listening
    assert not host.socket("tcp://0.0.0.0:40342").is_listening
    answer = host.check_output(
        "python3 -c \"import urllib.request as u; r = u.Request('http://127.0.0.1:40342/agentstatus"
        "?api-version=2019-08-15', headers={'Metadata': 'true'}); print(u.urlopen(r).read().decode())\""
    )
    assert json.loads(answer)["status"] == "Connected"


def test_state_directories_and_endpoint_environment(host):
    # root owns the state directory and what it trusts; himds only what it writes (issue 10, finding 3)
    for path, owner, mode in (
        ("/var/opt/azcmagent", "root", 0o755),
        ("/var/opt/azcmagent/certs", "himds", 0o750),
        ("/var/opt/azcmagent/tokens", "himds", 0o750),
        ("/var/opt/azcmagent/socks", "himds", 0o750),
        ("/var/opt/azcmagent/status", "himds", 0o755),
        ("/var/opt/azcmagent/log", "root", 0o1775),
    ):
        directory = host.file(path)
        assert directory.is_directory and directory.user == owner and directory.group == "himds", path
        assert directory.mode == mode, path
    for trusted in ("agentconfig.json", "localconfig.json", "connection-ca.pem"):
        file = host.file(f"/var/opt/azcmagent/{trusted}")
        assert file.user == "root" and file.mode & 0o022 == 0, trusted
    socket = host.file("/var/opt/azcmagent/socks/himds.sock")
    assert socket.is_socket and socket.mode == 0o600
    env = host.file("/lib/systemd/system.conf.d/azcmagent.conf")
    assert env.contains("IDENTITY_ENDPOINT=http://localhost:40342/metadata/identity/oauth2/token")
    assert env.contains("IMDS_ENDPOINT=http://localhost:40342")
    shown = json.loads(host.check_output("azcmagent show -j"))
    assert shown["dependentServiceStatus"]["agentService"] == "running"
    assert shown["dependentServiceStatus"]["extensionService"] == "running"
    # gcad, machine configuration: running in its own cgroup, with the quota of its setting
    assert shown["dependentServiceStatus"]["gcService"] == "running"
    # (started on demand: its path unit is what is enabled, docs/architecture.md)
    assert host.service("gcad.path").is_enabled and not host.service("gcad.service").is_enabled
    assert host.check_output("systemctl show -p CPUQuotaPerSecUSec gcad.service") == "CPUQuotaPerSecUSec=50ms"
    assert shown["stateDirectory"] == "as expected"
    # extd registered its extension certificate: the key stays root's, beside the certificate
    waagent = host.file("/var/lib/waagent")
    assert waagent.is_directory and waagent.user == "root" and waagent.mode == 0o700
    keys = host.check_output("ls /var/lib/waagent").split()
    prv = [name for name in keys if name.endswith(".prv")]
    assert len(prv) == 1 and prv[0][:-4] + ".crt" in keys, keys
    assert host.file(f"/var/lib/waagent/{prv[0]}").mode == 0o600


def _credentials() -> dict[str, str]:
    path = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "credentials.yml"
    document: dict[str, str] = yaml.safe_load(path.read_text())
    return document


def test_connected_to_the_expected_resource_with_its_tags(host):
    wanted = _credentials()
    shown = json.loads(host.check_output("azcmagent show -j"))
    name = host.check_output("hostname -s")
    assert shown["status"] == "Connected"
    assert shown["resourceName"] == name
    assert shown["resourceGroup"] == wanted["arc_agent_resource_group"]
    assert shown["subscriptionId"] == wanted["arc_agent_subscription_id"]
    assert shown["tenantId"] == wanted["arc_agent_tenant_id"]
    assert shown["location"] == wanted["arc_agent_location"]
    assert shown["tags"] == {"environment": "molecule"}


def test_control_plane_reports_the_machine_connected(host):
    name = host.check_output("hostname -s")
    data_dir = pathlib.Path(json.loads(_testhosts("env"))["state_dir"]) / "controlplane" / "data"
    listed = subprocess.run(
        [str(TOP / ".venv/bin/arc-controlplane"), "machine", "list", "--data-dir", str(data_dir), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    machine = {m["name"]: m for m in json.loads(listed)["machines"]}[name]
    assert machine["status"] == "Connected"
    assert machine["agentVersion"] == WANTED_VERSION
    assert machine["lastHeartbeat"]


def test_settings_and_the_control_plane_ca(host):
    config = json.loads(host.check_output("azcmagent config list -j"))
    settings = {item["key"]: item["value"] for item in config["localsettings"]}
    assert settings["incomingconnections.ports"] == ["22"]
    assert settings["controlplane.url"] == _credentials()["arc_agent_control_plane_url"]
    assert settings["controlplane.cafile"] == "/var/opt/azcmagent/controlplane-ca.pem"
    ca = host.file("/var/opt/azcmagent/controlplane-ca.pem")
    assert ca.user == "root" and ca.mode == 0o644
    assert ca.content_string == pathlib.Path(_credentials()["arc_agent_control_plane_ca"]).read_text()


def test_machine_key_is_private_to_himds(host):
    key = host.file("/var/opt/azcmagent/certs/identity.key")
    assert key.is_file
    assert key.user == "himds" and key.group == "himds"
    assert key.mode == 0o600
    assert host.file("/var/opt/azcmagent/certs/identity.crt").is_file
    # Nobody else may read it: an unprivileged user cannot even list the folder.
    nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups"
    assert host.run(f"{nobody} ls /var/opt/azcmagent/certs").rc != 0


def test_himds_unit_is_hardened(host):
    shown = host.check_output(
        "systemctl show himdsd -p User -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ProtectHome"
    )
    properties = dict(line.split("=", 1) for line in shown.splitlines())
    assert properties["User"] == "himds"
    assert properties["NoNewPrivileges"] == "yes"
    assert properties["ProtectSystem"] in ("strict", "full")
    assert properties["PrivateTmp"] == "yes"
