"""The agent runtime on real test hosts, against the control plane on the test network.

Two hosts (systemd, sshd, their own addresses) get the runtime from the `hybridops.arc.runtime`
playbook; the control plane runs in the controller namespace with a 5-second heartbeat interval
(so Disconnected comes after 15 s). Then, on the hosts, through ssh, as an operator would:
connect with each way to authenticate, show, config round trips, heartbeats seen by the control
plane, Disconnected when himds goes quiet, managed identity tokens (by hand, and through
azure-identity and MSAL, unmodified, in an application systemd starts), refusals that leave the
host as it was, disconnect and reconnect. Secrets reach the hosts on ssh's standard input into
0600 files, never on a command line, except in the test of Microsoft's documented examples,
which give them as flags (throwaway secrets on a throwaway host: that the form works is the point).

Needs root, the tools of `make deps`, the wheelhouse, the collection and the azure-identity
wheels (`make agent-hosts` makes them all).
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import stat
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from arc_lab import TESTHOSTS, TOP, ControlPlane, Host, Lab


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(1)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    started = Lab.start(2, "--heartbeat-interval", "5")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def fleet(lab: Lab) -> tuple[list[Host], ControlPlane]:
    return lab.hosts, lab.plane


def connect_args(plane: ControlPlane, name: str, *extra: str) -> list[str]:
    init = plane.init
    return [
        "connect", "-s", init["subscriptionId"], "-g", init["resourceGroup"], "-l", init["location"],
        "-n", name, *extra,
    ]  # fmt: skip


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


AZURE_IDENTITY_WHEELS = TOP / "build" / "azure-identity-wheels"  # make agent-hosts downloads them
AZURE_IDENTITY_APP = r"""
import json
import requests
from azure.identity import ManagedIdentityCredential
from msal import ManagedIdentityClient, SystemAssignedManagedIdentity
vault = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
storage = ManagedIdentityClient(SystemAssignedManagedIdentity(), http_client=requests.Session())
result = storage.acquire_token_for_client(resource="https://storage.azure.com")
msal = {key: result.get(key) for key in ("access_token", "token_source", "error_description")}
print(json.dumps({"azure_identity": {"access_token": vault.token}, "msal": msal}))
"""

TOKEN_PROBE = r"""
import json, urllib.error, urllib.request
url = "http://localhost:40342/metadata/identity/oauth2/token?api-version=2020-06-01&resource=https://vault.azure.net"
try:
    urllib.request.urlopen(urllib.request.Request(url, headers={"Metadata": "true"}))
except urllib.error.HTTPError as challenge:
    realm = challenge.headers["WWW-Authenticate"].split("realm=", 1)[1]
import os, stat
info = os.stat(realm)
secret = open(realm).read()
answer = urllib.request.Request(url, headers={"Metadata": "true", "Authorization": "Basic " + secret})
reply = urllib.request.urlopen(answer)
print(json.dumps({"realm": realm, "mode": oct(stat.S_IMODE(info.st_mode)), "uid": info.st_uid,
                  "gid": info.st_gid, "gone": not os.path.exists(realm), "token": json.load(reply)}))
"""


def test_the_agent_lifecycle_on_real_hosts(fleet: tuple[list[Host], ControlPlane]) -> None:
    (h1, h2), plane = fleet
    init = plane.init

    # h1: prepared with `config set`, then connected with exactly the real agent's flags.
    h1.json("config", "set", "controlplane.url", plane.env.url)
    h1.json("config", "set", "controlplane.cafile", "/root/controlplane-ca.pem")
    assert h1.json("config", "get", "controlplane.url") == {"key": "controlplane.url", "value": plane.env.url}
    onboarding = plane.onboarding
    h1.put_secret("/root/onboarding.json", {"service-principal-secret": onboarding["clientSecret"]})
    connected = h1.json(
        *connect_args(plane, "h1", "-t", init["tenantId"], "-i", onboarding["clientId"], "--config",
                      "/root/onboarding.json", "--tags", "env=test,'Cost Center'='IT, Ops'")
    )  # fmt: skip
    assert connected["resourceId"].endswith("/machines/h1") and connected["status"] == "Connected"
    assert plane.status("h1") == "Connected"
    assert (plane.machine("h1") or {})["tags"] == {"env": "test", "Cost Center": "IT, Ops"}

    # The private key: 0600 himds:himds; himds heartbeats (show sees it, the control plane too).
    key = h1.sh("stat -c '%a %U %G' /var/opt/azcmagent/certs/identity.key").stdout.strip()
    assert key == "600 himds himds"
    wait_for(
        lambda: h1.json("show", "lastHeartbeat")["lastHeartbeat"] > connected["lastHeartbeat"],
        30,
        "a heartbeat",
    )
    machine = plane.machine("h1") or {}
    assert machine["properties"]["osName"] == "linux" and machine["properties"]["machineFqdn"]

    # Managed identity: the challenge flow, a key file 0640 root:himds used once, a real token.
    probe = json.loads(h1.sh("python3 -", stdin=TOKEN_PROBE).stdout)
    assert probe["realm"].startswith("/var/opt/azcmagent/tokens/") and probe["realm"].endswith(".key")
    himds_gid = int(h1.sh("getent group himds | cut -d: -f3").stdout)
    assert (probe["mode"], probe["uid"], probe["gid"], probe["gone"]) == ("0o640", 0, himds_gid, True)
    token = claims(probe["token"]["access_token"])
    assert token["xms_mirid"].lower() == connected["resourceId"].lower()
    assert token["aud"] == "https://vault.azure.net"

    # The same through Azure's own libraries, unmodified, in an application that systemd starts
    # (so it gets IDENTITY_ENDPOINT and IMDS_ENDPOINT from the agent's environment file):
    # azure-identity's ManagedIdentityCredential and MSAL's ManagedIdentityClient.
    h1.put_tree(AZURE_IDENTITY_WHEELS, "/root/azure-identity-wheels")
    h1.sh(
        "python3 -m venv --without-pip /root/app && /root/app/bin/python "
        "$(ls /root/azure-identity-wheels/pip-*.whl)/pip install -q --no-index "
        "--find-links /root/azure-identity-wheels azure-identity"
    )
    h1.sh("cat > /root/app.py", stdin=AZURE_IDENTITY_APP)
    app = json.loads(h1.sh("systemd-run --wait --pipe --quiet /root/app/bin/python /root/app.py").stdout)
    for library, audience in (
        ("azure_identity", "https://vault.azure.net"),
        ("msal", "https://storage.azure.com"),
    ):
        issued = claims(app[library]["access_token"])
        assert issued["aud"] == audience, library
        assert issued["xms_mirid"].lower() == connected["resourceId"].lower(), library
        assert issued["oid"] == token["oid"], library
    assert app["msal"]["token_source"] == "identity_provider"

    # h2: an access token minted on the controller, the control plane given as flags.
    access = plane.token(onboarding["clientId"], onboarding["clientSecret"])
    h2.put_secret("/root/token.json", {"access-token": access})
    second = h2.json(
        *connect_args(plane, "h2", "--config", "/root/token.json", "--control-plane-url", plane.env.url,
                      "--control-plane-ca", "/root/controlplane-ca.pem")
    )  # fmt: skip
    assert second["tenantId"] == init["tenantId"]
    assert plane.status("h2") == "Connected"

    # himds goes quiet: Disconnected after 3 intervals (15 s); back when it runs again.
    h2.sh("systemctl stop himdsd")
    wait_for(lambda: plane.status("h2") == "Disconnected", 40, "h2 Disconnected")
    h2.sh("systemctl start himdsd")
    wait_for(lambda: plane.status("h2") == "Connected", 30, "h2 Connected again")

    # Refusals leave the host as it was.
    state_before = h2.sh("sha256sum /var/opt/azcmagent/agentconfig.json").stdout
    again = h2.azcmagent(*connect_args(plane, "h2", "--config", "/root/token.json"))
    assert again.returncode == 67 and again.stderr.startswith("AZCM0067: ")
    bad_value = h2.azcmagent("config", "set", "incomingconnections.ports", "99999")
    assert bad_value.returncode == 23 and "incomingconnections.ports" in bad_value.stderr
    assert h2.sh("sha256sum /var/opt/azcmagent/agentconfig.json").stdout == state_before

    # h1: disconnect with an administrator; the resource goes, the host forgets; then reconnect.
    h1.put_secret(
        "/root/admin.json",
        {
            "service-principal-id": plane.admin["clientId"],
            "service-principal-secret": plane.admin["clientSecret"],
        },
    )
    assert (
        h1.json("disconnect", "-t", init["tenantId"], "--config", "/root/admin.json")["status"]
        == "Disconnected"
    )
    assert plane.machine("h1") is None
    assert h1.sh("test -e /var/opt/azcmagent/certs/identity.key", check=False).returncode == 1
    assert h1.json("show", "status") == {"status": "Disconnected"}

    h1.put_secret("/root/wrong.json", {"service-principal-secret": "not-the-secret"})
    refused = h1.azcmagent(
        *connect_args(
            plane, "h1", "-t", init["tenantId"], "-i", onboarding["clientId"], "--config", "/root/wrong.json"
        )
    )
    assert refused.returncode == 41 and refused.stderr.startswith("AZCM0041: ")
    assert h1.sh("test -e /var/opt/azcmagent/agentconfig.json", check=False).returncode == 1
    assert plane.machine("h1") is None

    # Reconnect with the third way to authenticate: a service principal's certificate.
    pem, certified = plane.certificate_principal("hosts-cert")
    h1.sh("umask 077 && cat > /root/sp.pem", stdin=pem)
    reconnected = h1.json(
        *connect_args(
            plane, "h1", "-t", init["tenantId"], "-i", certified, "--service-principal-cert", "/root/sp.pem"
        )
    )
    assert reconnected["vmId"] != connected["vmId"]  # a new resource, a new identity
    assert plane.status("h1") == "Connected"

    # Nothing secret reached a log or the state.
    logs = h1.sh(
        "cat /var/opt/azcmagent/log/*.log /var/opt/azcmagent/agentconfig.json; "
        "journalctl -u himdsd --no-pager"
    ).stdout
    for secret in (onboarding["clientSecret"], plane.admin["clientSecret"], access):
        assert secret not in logs


def test_microsofts_documented_azcmagent_examples_run_as_written(
    fleet: tuple[list[Host], ControlPlane],
) -> None:
    """The examples of Microsoft's azcmagent pages (docs/reference/azcmagent.md, "Examples as
    Microsoft writes them"), with only the placeholders filled in: the subscription by its name,
    secrets as flags, no --tenant-id to disconnect, the documented defaults. The one setting
    before them says where the control plane is (`config set controlplane.url`, ours)."""
    h2, plane = fleet[0][1], fleet[1]
    init, onboarding, admin = plane.init, plane.onboarding, plane.admin
    # whatever the test before left: disconnected, its resource gone
    h2.put_secret("/root/admin.json", {"service-principal-secret": admin["clientSecret"]})
    left = h2.azcmagent(
        "disconnect", "--service-principal-id", admin["clientId"], "--config", "/root/admin.json"
    )
    assert left.returncode == 0, left.stdout + left.stderr
    h2.json("config", "set", "controlplane.url", plane.env.url)
    h2.json("config", "set", "controlplane.cafile", "/root/controlplane-ca.pem")
    name = h2.sh("hostname -s").stdout.strip()  # the documented default resource name

    # connect: the default login (device code) is not offered here, and says so, changing nothing
    default_login = h2.azcmagent(
        "connect", "--subscription-id", "hybridops.arc", "--resource-group", init["resourceGroup"],
        "--location", init["location"],
    )  # fmt: skip
    assert default_login.returncode == 16, default_login.stdout + default_login.stderr
    assert "interactive sign-in (a browser or a device code) is not offered" in default_login.stderr
    assert h2.json("show", "status") == {"status": "Disconnected"}

    # connect with a service principal, the subscription by its name
    connected = h2.azcmagent(
        "connect", "--subscription-id", "hybridops.arc", "--resource-group", init["resourceGroup"],
        "--location", init["location"], "--service-principal-id", onboarding["clientId"],
        "--service-principal-secret", onboarding["clientSecret"], "--tenant-id", init["tenantId"],
    )  # fmt: skip
    assert connected.returncode == 0, connected.stdout + connected.stderr
    assert plane.status(name) == "Connected"

    # show, as documented
    text = h2.azcmagent("show")
    assert text.returncode == 0 and "Agent Status" in text.stdout and "Connected" in text.stdout
    assert h2.json("show")["resourceName"] == name
    with_os = h2.json("show", "--os")
    assert with_os["osName"] and with_os["osType"] == "linux"
    assert set(h2.json("show", "status", "lastHeartbeat")) == {"status", "lastHeartbeat"}

    # the resource's tags, changed through the management API, reach show within seconds
    plane.patch_machine(name, {"tags": {"owner": "ops"}})
    wait_for(lambda: h2.json("show", "tags")["tags"] == {"owner": "ops"}, 20, "show to follow the tags")

    # config, as documented
    assert "proxy.url" in h2.azcmagent("config", "list").stdout
    assert h2.azcmagent("config", "set", "proxy.url", "http://proxy.contoso.com:8080").returncode == 0
    assert h2.json("config", "get", "proxy.url")["value"] == "http://proxy.contoso.com:8080"
    assert h2.azcmagent("config", "clear", "proxy.url").returncode == 0
    assert h2.json("config", "get", "proxy.url")["value"] == ""
    allow = ("extensions.allowlist", "Microsoft.Azure.Monitor/AzureMonitorLinuxAgent")
    assert h2.azcmagent("config", "set", *allow, "--add").returncode == 0
    assert allow[1] in h2.azcmagent("config", "get", "extensions.allowlist").stdout
    assert h2.azcmagent("config", "set", *allow, "--remove").returncode == 0
    assert h2.azcmagent("config", "info").returncode == 0

    # check and logs, as documented
    for args in (
        ("check",),
        ("check", "--location", "eastus"),
        ("check", "--location", "eastus", "--enable-pls-check"),
    ):
        checked = h2.azcmagent(*args)
        assert checked.returncode == 0, f"azcmagent {args}: {checked.stdout}{checked.stderr}"
    assert h2.azcmagent("logs").returncode == 0
    assert h2.sh("ls azcmagent-*.zip").stdout.strip()
    assert h2.azcmagent("logs", "--full", "--output", "/tmp/azcmagent-logs.zip").returncode == 0
    assert h2.sh("python3 -m zipfile -l /tmp/azcmagent-logs.zip").stdout.count(".log") >= 1

    # disconnect with a service principal: no --tenant-id, the machine knows it
    disconnected = h2.azcmagent(
        "disconnect", "--service-principal-id", admin["clientId"], "--service-principal-secret",
        admin["clientSecret"],
    )  # fmt: skip
    assert disconnected.returncode == 0, disconnected.stdout + disconnected.stderr
    assert plane.machine(name) is None
    assert h2.json("show", "status") == {"status": "Disconnected"}
    assert h2.azcmagent("disconnect", "--force-local-only").returncode == 0

    # extension, as documented: list (also disconnected), remove with the extension service stopped
    # (while extd runs, remove refuses: agent/tests/test_extension_cli.py; disconnected, it ends)
    assert h2.azcmagent("extension", "list").returncode == 0
    h2.sh("systemctl stop extd.path extd")
    assert h2.azcmagent("extension", "remove", "--all").returncode == 0
    h2.sh("systemctl start extd.path")


BURNER = {
    "HandlerManifest.json": json.dumps(
        [
            {
                "version": 1.0,
                "handlerManifest": {
                    f"{verb}Command": f"bin/handler.sh {verb}"
                    for verb in ("install", "enable", "disable", "uninstall", "update")
                },
            }
        ]
    ),
    # enable leaves a daemon behind that burns CPU, as real handlers leave their agents running
    "bin/handler.sh": """#!/bin/sh
case "$1" in
  enable) setsid "$(dirname "$0")/burn.sh" </dev/null >/dev/null 2>&1 & echo "burning" ;;
  disable|uninstall) pkill -f bin/burn.sh || true ;;
esac
""",
    "bin/burn.sh": "#!/bin/sh\nwhile :; do :; done\n",
}
BURNER_SLICE = "azure.slice/azure-vmextensions.slice/azure-vmextensions-Contoso.Testing.Burner.slice"


def cpu_max(host: Host) -> str:
    """The burner's slice quota as cgroup v2 writes it (``cpu.max``: QUOTA PERIOD); on a cgroup v1
    host systemd writes the same two numbers to ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``."""
    v2, v1 = f"/sys/fs/cgroup/{BURNER_SLICE}", f"/sys/fs/cgroup/cpu/{BURNER_SLICE}"
    return host.sh(
        f"cat {v2}/cpu.max 2>/dev/null || echo $(cat {v1}/cpu.cfs_quota_us {v1}/cpu.cfs_period_us)"
    ).stdout.strip()


def cpu_share(host: Host, seconds: float = 4) -> float:
    """The part of one core the burner's slice used over ``seconds`` (its cgroup2 ``usage_usec``)."""
    stat_file = next(
        path
        for path in (
            f"/sys/fs/cgroup/{BURNER_SLICE}/cpu.stat",
            f"/sys/fs/cgroup/unified/{BURNER_SLICE}/cpu.stat",
        )
        if host.sh(f"test -e {path}", check=False).returncode == 0
    )
    usage = f"awk '/^usage_usec/ {{print $2}}' {stat_file}"
    before, start = int(host.sh(usage).stdout), time.monotonic()
    time.sleep(seconds)
    return (int(host.sh(usage).stdout) - before) / 1e6 / (time.monotonic() - start)


def test_an_extension_runs_within_its_cpu_quota_and_a_new_limit_reaches_it_running(
    fleet: tuple[list[Host], ControlPlane], tmp_path: pathlib.Path
) -> None:
    """extd on a real host (docs/extensions.md, "CPU limits"): a handler that leaves a CPU burner
    running is held to `extensions.agent.cpulimit` by its slice's quota, and a new limit set with
    `azcmagent config set` reaches the running burner without a restart."""
    h1, plane = fleet[0][0], fleet[1]
    package = tmp_path / "burner.zip"
    with zipfile.ZipFile(package, "w") as archive:
        for name, text in BURNER.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            archive.writestr(info, text)
    plane.env.controlplane_cli(
        "extension", "publish", str(package), "--publisher", "Contoso.Testing", "--type", "Burner",
        "--version", "1.0.0",
    )  # fmt: skip
    assert h1.json("show", "status") == {"status": "Connected"}
    assert h1.json("config", "set", "extensions.agent.cpulimit", "20")
    body = {
        "location": plane.init["location"],
        "properties": {"publisher": "Contoso.Testing", "type": "Burner", "typeHandlerVersion": "1.0"},
    }
    status, _answer = plane.arm("PUT", plane.extension_path("h1", "burner"), body)
    assert status == 202, status
    done = plane.settled_extension("h1", "burner") or {}
    assert done["properties"]["provisioningState"] == "Succeeded", done
    assert done["properties"]["instanceView"]["status"]["message"] == "burning"

    # The quota is the slice's (20 % of a core: 20 ms in every 100 ms), and the burner keeps to it:
    # at or below the quota (+5 % for measurement), far below the whole core it takes unthrottled.
    assert cpu_max(h1) == "20000 100000"
    used = cpu_share(h1)
    assert 0.05 < used <= 0.25, f"the burner used {used:.0%} of a core under a 20 % quota"

    # A new limit reaches the running burner (extd looks at the setting every 2 s).
    assert h1.json("config", "set", "extensions.agent.cpulimit", "10")
    wait_for(lambda: cpu_max(h1) == "10000 100000", 15, "the new quota on the running slice")
    used = cpu_share(h1)
    assert used <= 0.15, f"the burner used {used:.0%} of a core under a 10 % quota"
    assert h1.sh("pgrep -f bin/burn.sh").stdout.strip(), "the burner ran on, unrestarted"

    # Removal runs the handler's disable and uninstall: the burner stops, the files go.
    status, _answer = plane.arm("DELETE", plane.extension_path("h1", "burner"))
    assert status == 202, status
    assert plane.settled_extension("h1", "burner") is None
    assert h1.sh("pgrep -f bin/burn.sh", check=False).returncode == 1
    assert h1.sh("ls /var/lib/waagent | grep -c Burner", check=False).stdout.strip() == "0"
    h1.json("config", "clear", "extensions.agent.cpulimit")


FILE_SERVER = """
import functools, http.server, ssl, sys
folder, address, port, cert, key = sys.argv[1:]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
server = http.server.ThreadingHTTPServer((address, int(port)), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def test_customscript_runs_a_protected_command_with_files_from_an_https_server(
    lab: Lab, tmp_path: pathlib.Path
) -> None:
    """The CustomScript extension shipped with the repository (docs/customscript.md), built by
    `make extensions` and published into the control plane, on a real host: `fileUris` from an
    HTTPS server the host trusts through its system store, a protected command, the output in
    the status, nothing secret in a log, and removal leaving no files."""
    h1, plane = lab.hosts[0], lab.plane
    assert {(p["type"], p["version"]) for p in lab.publish_extensions()} == {
        ("CustomScript", "2.1.0"),
        ("CustomScript", "2.2.0"),
    }
    # A file server in the controller namespace, with a certificate of a throwaway CA that h1
    # trusts the way a machine trusts a company CA (update-ca-certificates).
    address = plane.env.url.split("//", 1)[1].rsplit(":", 1)[0]
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.sh").write_bytes(b'#!/bin/sh\r\necho "hello $1" > /root/cse-ran\r\necho done-$1\r\n')
    for command in (
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=files-ca "
        f"-keyout {tmp_path}/ca.key -out {tmp_path}/ca.crt",
        f"openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN={address} "
        f"-keyout {tmp_path}/server.key -out {tmp_path}/server.csr",
        f"openssl x509 -req -in {tmp_path}/server.csr -CA {tmp_path}/ca.crt -CAkey {tmp_path}/ca.key "
        f"-days 2 -extfile <(printf 'subjectAltName=IP:{address}') -out {tmp_path}/server.crt",
    ):
        subprocess.run(["bash", "-c", command], check=True, capture_output=True)
    server = subprocess.Popen(
        ["ip", "netns", "exec", plane.env.ctl_ns, "python3", "-c", FILE_SERVER, str(files), address, "9443",
         f"{tmp_path}/server.crt", f"{tmp_path}/server.key"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    h1.sh("cat > /usr/local/share/ca-certificates/files-ca.crt && update-ca-certificates",
          stdin=(tmp_path / "ca.crt").read_text())  # fmt: skip
    try:
        body = {
            "location": plane.init["location"],
            "properties": {
                "publisher": "Microsoft.Azure.Extensions", "type": "CustomScript",
                "typeHandlerVersion": "2.1", "settings": {"fileUris": [f"https://{address}:9443/hello.sh"]},
                "protectedSettings": {"commandToExecute": "sh hello.sh s3cret-argument"},
            },
        }  # fmt: skip
        status, _answer = plane.arm("PUT", plane.extension_path("h1", "cse"), body)
        assert status == 202, status
        done = plane.settled_extension("h1", "cse") or {}
        assert done["properties"]["provisioningState"] == "Succeeded", done
        assert done["properties"]["instanceView"]["status"]["message"] == (
            "Enable succeeded: \n[stdout]\ndone-s3cret-argument\n\n[stderr]\n"
        )
        assert "protectedSettings" not in done["properties"]
        # Shown on the host: it ran there, the script's Windows line ends were converted first.
        assert h1.sh("cat /root/cse-ran").stdout == "hello s3cret-argument\n"
        run = "/var/lib/waagent/custom-script/download/1"
        assert h1.sh(f"ls {run}").stdout.split() == ["hello.sh", "stderr", "stdout"]
        assert "\r" not in h1.sh(f"cat {run}/hello.sh").stdout
        logs = h1.sh(
            "cat /var/lib/GuestConfig/ext_mgr_logs/* /var/log/azure/*/*.log; journalctl -u extd --no-pager"
        ).stdout
        assert "s3cret" not in logs

        status, _answer = plane.arm("DELETE", plane.extension_path("h1", "cse"))
        assert status == 202, status
        assert plane.settled_extension("h1", "cse") is None
        assert (
            h1.sh(
                "ls /var/lib/waagent | grep -ci -e customscript -e custom-script", check=False
            ).stdout.strip()
            == "0"
        )
    finally:
        server.terminate()
        server.wait(10)
        h1.sh(
            "rm -f /usr/local/share/ca-certificates/files-ca.crt && update-ca-certificates --fresh",
            check=False,
        )


def package_for(host: Host, bundle: pathlib.Path) -> pathlib.Path:
    """The bundle's archive for the host's Python."""
    minor = host.sh("python3 -c 'import sys; print(sys.version_info[1])'").stdout.strip()
    targets = json.loads((bundle / "targets.json").read_text())["targets"]
    return bundle / targets[f"cp3{minor}-x86_64"]["archive"]


def broken_copy(archive: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """The same runtime, but its himds exits at once (a bad release)."""
    tree = target.with_suffix(".d")
    tree.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(tree)], check=True)
    (tree / "bin" / "himds").write_text("#!/bin/sh\necho 'this himds is broken' >&2\nexit 3\n")
    subprocess.run(["tar", "-czf", str(target), "-C", str(tree), "."], check=True)
    return target


def switched(host: Host, current: str) -> None:
    """Wait until the upgrade started in the background has switched versions (and is in its
    health check); when it has not, what the upgrade said is in the failure."""
    try:
        wait_for(
            lambda: host.sh("readlink /opt/azcmagent/current").stdout.strip() != current
            and host.sh("test -f /opt/azcmagent/upgrade.pending", check=False).returncode == 0,
            180, "the switch",  # staging the package and starting Python take long on a loaded 2-core machine
        )  # fmt: skip
    except AssertionError as timed_out:
        said = host.sh("cat /root/upgrade.out; systemctl status azcmagent-upgrade --no-pager", check=False)
        raise AssertionError(f"{timed_out}; the upgrade said:\n{said.stdout[-3000:]}") from None


def test_an_upgrade_is_checked_and_a_bad_or_interrupted_one_rolled_back(
    fleet: tuple[list[Host], ControlPlane], tmp_path: pathlib.Path
) -> None:
    """`azcmagent upgrade` on a connected host (docs/agent-upgrade.md): the new version side by side,
    switched, healthy (himds answers as it, a heartbeat is accepted); a version whose himds does not
    start is rolled back by its health check; an upgrade killed in the middle is undone by the
    recovery script. Identity and settings never change."""
    h1, plane = fleet[0][0], fleet[1]
    assert h1.json("show", "status") == {"status": "Connected"}
    kept = "/var/opt/azcmagent/certs/identity.key /var/opt/azcmagent/{localconfig,agentconfig}.json"
    before = h1.sh(f"readlink /opt/azcmagent/current; sha256sum {kept}").stdout
    old_version = h1.json("version")["version"]
    vm_id = h1.json("show", "vmId")["vmId"]
    alt = tmp_path / "alt"
    subprocess.run([str(TOP / "tools/alt-wheelhouse.sh"), str(alt), "1.65.3500.100"], check=True,
                   capture_output=True)  # fmt: skip
    packages = tmp_path / "packages"
    packages.mkdir()
    good = package_for(h1, alt)
    (packages / good.name).write_bytes(good.read_bytes())
    broken = broken_copy(good, packages / "broken.tar.gz")
    h1.put_tree(packages, "/root/packages")

    def upgrade(archive: pathlib.Path, *extra: str) -> subprocess.CompletedProcess[str]:
        sha = hashlib.sha256(archive.read_bytes()).hexdigest()
        return h1.azcmagent(
            "upgrade", "--package", f"/root/packages/{archive.name}", "--sha256", sha, *extra, "-j"
        )

    # A good version: switched, healthy, the control plane hears it; the old one kept as previous.
    done = upgrade(good)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"changed": True, "from": old_version, "to": "1.65.3500.100"}
    assert h1.json("version") == {"version": "1.65.3500.100"}
    assert h1.json("show", "status", "vmId") == {"status": "Connected", "vmId": vm_id}
    wait_for(
        lambda: (plane.machine("h1") or {}).get("properties", {}).get("agentVersion") == "1.65.3500.100",
        30, "the control plane hears the new version",
    )  # fmt: skip
    assert h1.sh("readlink /opt/azcmagent/previous").stdout.strip() == before.splitlines()[0]
    current = h1.sh("readlink /opt/azcmagent/current").stdout.strip()
    assert h1.sh("systemctl is-active himdsd extd.path").stdout.split() == ["active", "active"]

    # A version whose himds does not start: rolled back by its health check, the failure named.
    failed = upgrade(broken, "--timeout", "10")
    assert failed.returncode == 80, (failed.stdout, failed.stderr)
    said = failed.stdout + failed.stderr  # (with -j the error is JSON on stdout)
    assert "failed its health check" in said and "1.65.3500.100 runs again" in said, said
    assert h1.sh("readlink /opt/azcmagent/current").stdout.strip() == current
    assert h1.sh("ls /opt/azcmagent/versions").stdout.split() == sorted(
        [current.split("/")[1], before.splitlines()[0].split("/")[1]]
    )
    status = json.loads(h1.sh("cat /var/opt/azcmagent/upgrade-status.json").stdout)
    assert status["lastAttemptStatus"] == "Failed" and "himds" in status["lastAttemptMessage"]
    wait_for(lambda: h1.json("show", "status") == {"status": "Connected"}, 30, "Connected again")
    # reported with the first heartbeat of the version back: the machine's agentUpgrade.lastAttempt*
    wait_for(
        lambda: ((plane.machine("h1") or {}).get("properties", {}).get("agentUpgrade") or {}).get(
            "lastAttemptMessage") == status["lastAttemptMessage"],
        30, "the failed attempt in the machine's agentUpgrade",
    )  # fmt: skip

    # Killed in the middle (after the switch, during the health check): the recovery script, run
    # as the upgrade's unit ends, puts the version back and starts the services.
    sha = hashlib.sha256(broken.read_bytes()).hexdigest()
    h1.sh(f"nohup azcmagent upgrade --package /root/packages/{broken.name} --sha256 {sha} --timeout 300 "
          "> /root/upgrade.out 2>&1 &")  # fmt: skip
    switched(h1, current)
    h1.sh("systemctl kill -s KILL azcmagent-upgrade.service")
    wait_for(
        lambda: h1.sh("readlink /opt/azcmagent/current").stdout.strip() == current, 30, "the version back"
    )
    wait_for(lambda: h1.json("show", "status") == {"status": "Connected"}, 60, "Connected again")
    assert h1.json("version") == {"version": "1.65.3500.100"}
    status = json.loads(h1.sh("cat /var/opt/azcmagent/upgrade-status.json").stdout)
    assert status["lastAttemptStatus"] == "Failed" and "was cut short" in status["lastAttemptMessage"]
    assert h1.sh("test -e /opt/azcmagent/upgrade.pending", check=False).returncode != 0

    # The power cut in the middle (the host's init killed, then booted): himds's unit runs the
    # recovery script before it starts (ExecStartPre), and the machine is Connected on 1.65 again.
    h1.sh(f"nohup azcmagent upgrade --package /root/packages/{broken.name} --sha256 {sha} --timeout 300 "
          "> /root/upgrade.out 2>&1 &")  # fmt: skip
    switched(h1, current)
    subprocess.run(
        [str(TESTHOSTS), "reboot", h1.name.removeprefix("h"), "crash"], check=True, capture_output=True
    )
    # (show may still say Connected from before the cut: the version back is the sign to wait for)
    wait_for(
        lambda: h1.sh("readlink /opt/azcmagent/current", check=False).stdout.strip() == current,
        90, "the version back after the power cut",
    )  # fmt: skip
    wait_for(lambda: h1.sh("systemctl is-active himdsd", check=False).stdout.strip() == "active", 60, "himds")
    wait_for(
        lambda: h1.json("show", "status") == {"status": "Connected"}, 90, "Connected after the power cut"
    )
    assert h1.json("version") == {"version": "1.65.3500.100"}
    assert "was cut short" in h1.sh("cat /var/opt/azcmagent/upgrade-status.json").stdout

    after = h1.sh(f"sha256sum {kept}").stdout
    assert after.splitlines() == before.splitlines()[1:], "identity and settings untouched"
    assert h1.json("show", "vmId") == {"vmId": vm_id}


def test_upgrades_come_from_the_control_planes_store_and_its_desired_version(
    lab: Lab, tmp_path: pathlib.Path
) -> None:
    """docs/agent-upgrade.md, "From the control plane": versions published with `arc-controlplane
    agent publish`; `azcmagent upgrade --version MAJOR.MINOR` takes one from the store (checked
    against its signature); `agentUpgrade.desiredVersion` set through the management API upgrades
    the machine by itself (extd, woken by the long-poll) and the attempt is reported in ARM."""
    h1, plane = lab.hosts[0], lab.plane
    vm_id = h1.json("show", "vmId")["vmId"]
    alt = tmp_path / "alt"
    subprocess.run([str(TOP / "tools/alt-wheelhouse.sh"), str(alt), "1.66.3600.1"], check=True,
                   capture_output=True)  # fmt: skip
    original = json.loads((TOP / "build/wheelhouse/targets.json").read_text())["version"]
    for bundle in (TOP / "build/wheelhouse", alt):
        published = lab.env.controlplane_cli("agent", "publish", str(bundle), *lab.database)
        assert {p["version"] for p in published["packages"]} in ({original}, {"1.66.3600.1"}), published
    before = h1.json("version")["version"]
    assert before != "1.66.3600.1"

    # what would happen (the collection's check mode): nothing changes
    check = h1.azcmagent("upgrade", "--version", "1.66", "--check", "-j")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout) == {"changed": True, "from": before, "to": "1.66.3600.1"}
    assert h1.json("version") == {"version": before}
    # the operator's way: a MAJOR.MINOR from the store
    done = h1.azcmagent("upgrade", "--version", "1.66", "-j")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"changed": True, "from": before, "to": "1.66.3600.1"}
    missing = h1.azcmagent("upgrade", "--version", "1.99")
    assert missing.returncode == 80 and "publishes no agent 1.99" in missing.stderr, missing.stderr
    assert h1.json("version") == {"version": "1.66.3600.1"}
    assert h1.sh("ls /var/opt/azcmagent/upgrade-downloads").stdout.strip() == "", "downloads go"

    # the control plane's way: desiredVersion (here back to the version first installed)
    below_group = plane.machine_path("h1")[plane.machine_path("h1").index("/providers/") :]
    unknown = {"properties": {"agentUpgrade": {"desiredVersion": "1.99.0.0"}}}
    status, refused = plane.arm("PATCH", below_group, unknown)
    assert status == 400 and refused["error"]["code"] == "InvalidAgentVersion", refused
    correlation = "0f8fad5b-d9cb-469f-a165-70867728950e"
    plane.patch_machine(
        "h1", {"properties": {"agentUpgrade": {"desiredVersion": original, "correlationId": correlation}}}
    )

    def reported() -> dict[str, Any]:
        return (plane.machine("h1") or {}).get("properties", {})

    wait_for(
        lambda: reported().get("agentVersion") == original
        and (reported().get("agentUpgrade") or {}).get("lastAttemptDesiredVersion") == original,
        120, "the machine upgraded itself to its desiredVersion and reported it",
    )  # fmt: skip
    upgrade = reported()["agentUpgrade"]
    assert upgrade["lastAttemptStatus"] == "Success", upgrade
    assert upgrade["desiredVersion"] == original and upgrade["correlationId"] == correlation
    assert h1.json("version") == {"version": original}
    wait_for(lambda: h1.json("show", "status", "vmId") == {"status": "Connected", "vmId": vm_id}, 60,
             "Connected on the version asked for")  # fmt: skip
    assert h1.sh("systemctl is-active himdsd extd.path").stdout.split() == ["active", "active"]
    # answered once: extd (now of the new version) does not start it again
    time.sleep(5)
    runs = h1.sh("journalctl -u extd --no-pager | grep -c 'the control plane asks for agent'", check=False)
    assert runs.stdout.strip() == "1", runs.stdout


GC_API = "2024-04-05"
GCAD_DROP_IN = "/etc/systemd/system/gcad.service.d"
GCAD_EVERY_3_SECONDS = "[Service]\nEnvironment=GCAD_EVALUATION_INTERVAL_SECONDS=3\n"


def gc_service(host: Host) -> str:
    return str(host.json("show", "dependentServiceStatus")["dependentServiceStatus"]["gcService"])


def gcad_quota(host: Host) -> str:
    return host.sh("systemctl show -p CPUQuotaPerSecUSec gcad.service").stdout.strip()


def test_machine_configuration_corrects_drift_on_a_real_host_within_its_cpu_share(
    fleet: tuple[list[Host], ControlPlane],
) -> None:
    """gcad on a real host (docs/machine-configuration.md): the role installed and started it; the
    shipped SshHardening package, assigned with parameters (root keeps its key login, the test
    needs it), is applied and reported Compliant with the settings changed on the host; a change
    by hand is corrected at the next evaluation; its unit has the CPU quota of the setting;
    turned off it stops and `show` says so; removed, nothing is evaluated any more."""
    h2, plane = fleet[0][1], fleet[1]
    shown = h2.json("show", "status", "resourceName")
    name = shown["resourceName"]
    if shown["status"] != "Connected":
        h2.azcmagent("disconnect", "--force-local-only")
        h2.put_secret("/root/onboarding.json", {"service-principal-secret": plane.onboarding["clientSecret"]})
        name = "h2-gc"
        h2.json(
            *connect_args(plane, name, "-t", plane.init["tenantId"], "-i", plane.onboarding["clientId"],
                          "--config", "/root/onboarding.json", "--control-plane-url", plane.env.url,
                          "--control-plane-ca", "/root/controlplane-ca.pem")
        )  # fmt: skip
    assert h2.sh("systemctl is-active gcad.path").stdout.strip() == "active"  # gcad on demand
    plane.env.controlplane_cli("configuration", "publish", str(TOP / "build/configurations/SshHardening.zip"))
    h2.sh("cp -p /etc/ssh/sshd_config /root/sshd_config.before")
    h2.sh(f"mkdir -p {GCAD_DROP_IN} && cat > {GCAD_DROP_IN}/interval.conf", stdin=GCAD_EVERY_3_SECONDS)
    h2.sh("systemctl daemon-reload && systemctl restart gcad.service")
    path = (
        f"/providers/Microsoft.HybridCompute/machines/{name}"
        "/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments/SshHardening"
    )
    keep_root_keys = [
        {"name": "[nxFileLine]PermitRootLogin;ContainsLine", "value": "PermitRootLogin prohibit-password"},
        {
            "name": "[nxFileLine]PermitRootLogin;DoesNotContainPattern",
            "value": r"^\s*PermitRootLogin\s+(?!prohibit-password\s*$)",
        },
    ]
    body = {"properties": {"guestConfiguration": {
        "name": "SshHardening", "version": "1.0.0", "assignmentType": "ApplyAndAutoCorrect",
        "configurationParameter": keep_root_keys}}}  # fmt: skip
    try:
        status, created = plane.arm("PUT", f"{path}?api-version={GC_API}", body)
        assert status == 201, created

        def compliance() -> dict[str, Any]:
            answer: dict[str, Any] = plane.arm("GET", f"{path}?api-version={GC_API}")[1]["properties"]
            return answer

        wait_for(
            lambda: compliance()["complianceStatus"] == "Compliant", 60, "SshHardening applied and reported"
        )
        config = h2.sh("cat /etc/ssh/sshd_config").stdout.splitlines()
        assert "PermitRootLogin prohibit-password" in config and "MaxAuthTries 4" in config
        assert h2.sh("stat -c %a /etc/ssh/sshd_config").stdout.strip() == "600"

        first = compliance()["latestReportId"]
        h2.sh("echo 'X11Forwarding yes' >> /etc/ssh/sshd_config")
        wait_for(lambda: compliance()["latestReportId"] != first, 60, "a new evaluation")
        wait_for(
            lambda: "X11Forwarding yes" not in h2.sh("cat /etc/ssh/sshd_config").stdout, 30, "drift corrected"
        )
        assert compliance()["complianceStatus"] == "Compliant"
        reports = plane.arm("GET", f"{path}/reports?api-version={GC_API}")[1]["value"]
        assert len(reports) >= 2 and reports[0]["properties"]["details"]["operationType"] == "Consistency"

        # its share: the setting's quota on its unit (5 % of a core: 50 ms per second)
        assert (
            h2.sh("systemctl show -p CPUQuotaPerSecUSec gcad.service").stdout.strip()
            == "CPUQuotaPerSecUSec=50ms"
        )
        h2.json("config", "set", "guestconfiguration.agent.cpulimit", "10")
        wait_for(lambda: gcad_quota(h2) == "CPUQuotaPerSecUSec=100ms", 30, "the new quota on gcad.service")
        h2.json("config", "clear", "guestconfiguration.agent.cpulimit")

        # off: gcad stops, show says so; on again: it runs
        h2.json("config", "set", "guestconfiguration.enabled", "false")
        wait_for(lambda: gc_service(h2) == "stopped", 30, "gcad stopped")
        h2.json("config", "clear", "guestconfiguration.enabled")
        wait_for(lambda: gc_service(h2) == "running", 30, "gcad running again")
    finally:
        plane.arm("DELETE", f"{path}?api-version={GC_API}")
        h2.sh(f"rm -rf {GCAD_DROP_IN} && systemctl daemon-reload && systemctl restart gcad.service")
        h2.sh("cp -p /root/sshd_config.before /etc/ssh/sshd_config")
    time.sleep(5)
    assert h2.sh("ls /var/lib/GuestConfig/Configuration").stdout.strip() == "", "its package is gone"
