"""What the default scenario leaves on each host, checked on the host itself."""

from __future__ import annotations

import json
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
    assert link.linked_to == "/opt/azcmagent/bin/azcmagent"
    assert host.check_output("azcmagent version") == f"azcmagent version {WANTED_VERSION}"
    assert json.loads(host.check_output("azcmagent version --json")) == {"version": WANTED_VERSION}


def test_himds_program_is_installed(host):
    himds = host.file("/opt/azcmagent/bin/himds")
    assert himds.is_file and himds.mode & 0o111
    assert host.check_output("/opt/azcmagent/bin/himds --version") == f"himds version {WANTED_VERSION}"


def test_packages_were_copied_with_their_checksums(host):
    sums = host.file("/opt/azcmagent/packages/SHA256SUMS")
    assert sums.is_file
    result = host.run("cd /opt/azcmagent/packages && sha256sum --check --strict --quiet SHA256SUMS")
    assert result.rc == 0, result.stderr


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
    assert json.loads(answer)["status"] == "Disconnected"  # installed, not connected


def test_state_directories_and_endpoint_environment(host):
    for path, mode in (
        ("/var/opt/azcmagent", 0o755),
        ("/var/opt/azcmagent/certs", 0o750),
        ("/var/opt/azcmagent/tokens", 0o750),
        ("/var/opt/azcmagent/socks", 0o750),
        ("/var/opt/azcmagent/log", 0o750),
    ):
        directory = host.file(path)
        assert directory.is_directory and directory.user == "himds" and directory.group == "himds", path
        assert directory.mode == mode, path
    socket = host.file("/var/opt/azcmagent/socks/himds.sock")
    assert socket.is_socket and socket.mode == 0o600
    env = host.file("/lib/systemd/system.conf.d/azcmagent.conf")
    assert env.contains("IDENTITY_ENDPOINT=http://localhost:40342/metadata/identity/oauth2/token")
    assert env.contains("IMDS_ENDPOINT=http://localhost:40342")
    shown = json.loads(host.check_output("azcmagent show -j"))
    assert shown["status"] == "Disconnected"
    assert shown["dependentServiceStatus"]["agentService"] == "running"
    assert shown["dependentServiceStatus"]["extensionService"] == "not installed"
