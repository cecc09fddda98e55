"""The agent's files and secrets on real hosts, through a whole lifecycle driven by the playbooks.

In order (one lab for the module): the ``onboard`` playbook installs and connects two hosts
while every process list on them is sampled; then the modes and owners of every key and state
file on both sides; the ``himds`` account trying to take what root trusts (issue 10, finding 3);
a local user flooding the managed identity endpoint (finding 9); the ``offboard`` playbook with
the administrator's secret; last, every log, journal, process list, module result and state
file of the hosts and the controller is searched for the actual secret values: none may appear.

Needs root and the tools of ``make deps``; ``make security`` runs it.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from arc_lab import TESTHOSTS, TOP, Host, Lab, run

SAMPLER = "/root/ps.samples"
TOKEN = "/metadata/identity/oauth2/token?api-version=2020-06-01&resource=https://management.azure.com/"


@dataclass
class Session:
    lab: Lab
    work: pathlib.Path
    outputs: list[str] = field(default_factory=list)
    """Everything the playbooks printed (with -v: every module's result)."""
    tokens: list[str] = field(default_factory=list)
    """Access tokens seen by the tests: they must not turn up anywhere either."""

    def playbook(self, name: str, **extra: object) -> str:
        variables = Lab.write_secret_json(self.work / f"{name}.json", self.lab.onboard_vars(**extra))
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build/collections"),
            "ANSIBLE_FORCE_COLOR": "0",
        }
        inventory = run(str(TESTHOSTS), "inventory").strip()
        playbook = [str(TOP / ".venv/bin/ansible-playbook"), "-v", "-i", inventory, f"hybridops.arc.{name}"]
        done = subprocess.run(
            [*playbook, "-e", f"@{variables}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=False,
        )
        self.outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        return done.stdout


def sample_processes(host: Host) -> None:
    """Every 50 ms, the argument lists of every process on ``host``, until the host goes down."""
    loop = f"while :; do ps -eo args >> {SAMPLER}; sleep 0.05; done"
    host.sh(f"setsid nohup sh -c {shlex.quote(loop)} >/dev/null 2>&1 < /dev/null &")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    lab = Lab.start(2, install=False)
    try:
        for host in lab.hosts:
            sample_processes(host)
        started = Session(lab, tmp_path_factory.mktemp("security"))
        started.playbook("onboard")
        yield started
    finally:
        lab.stop()


def stat(host: Host, path: str) -> tuple[str, str, int]:
    owner, group, mode = host.sh(f"stat -c '%U %G %a' {shlex.quote(path)}").stdout.split()
    return owner, group, int(mode, 8)


def test_every_key_and_state_file_has_the_right_owner_and_mode(session: Session) -> None:
    expected = {
        "/var/opt/azcmagent": ("root", "himds", 0o755),
        "/var/opt/azcmagent/agentconfig.json": ("root", "root", 0o644),
        "/var/opt/azcmagent/localconfig.json": ("root", "root", 0o644),
        "/var/opt/azcmagent/connection-ca.pem": ("root", "root", 0o644),
        "/var/opt/azcmagent/agent.lock": ("root", "himds", 0o640),
        "/var/opt/azcmagent/certs": ("himds", "himds", 0o750),
        "/var/opt/azcmagent/certs/identity.key": ("himds", "himds", 0o600),
        "/var/opt/azcmagent/certs/identity.crt": ("himds", "himds", 0o644),
        "/var/opt/azcmagent/tokens": ("himds", "himds", 0o750),
        "/var/opt/azcmagent/socks": ("himds", "himds", 0o750),
        "/var/opt/azcmagent/socks/himds.sock": ("himds", "himds", 0o600),
        "/var/opt/azcmagent/status": ("himds", "himds", 0o755),
        "/var/opt/azcmagent/log": ("root", "himds", 0o1775),
        "/var/opt/azcmagent/log/himds.log": ("himds", "himds", 0o640),
    }
    for host in session.lab.hosts:
        for path, wanted in expected.items():
            assert stat(host, path) == wanted, f"{host.name}: {path}"
        writable = host.sh("find /var/opt/azcmagent /opt/azcmagent -perm -o+w ! -type l ! -type s").stdout
        assert writable == "", f"{host.name}: world-writable: {writable}"
    data = session.lab.env.data_dir
    assert (data.stat().st_mode & 0o777) == 0o700
    for private in (data / "controlplane.db", data / "keys" / "token-signing.pem", data / "pki" / "ca.key"):
        assert (private.stat().st_mode & 0o777) == 0o600, private


def as_himds(host: Host, command: str) -> subprocess.CompletedProcess[str]:
    return host.sh(f"runuser -u himds -- /bin/sh -c {shlex.quote(command)}", check=False)


def test_the_himds_account_cannot_take_what_root_trusts(session: Session) -> None:
    host = session.lab.hosts[0]
    before = host.sh(
        "sha256sum /var/opt/azcmagent/agentconfig.json /var/opt/azcmagent/connection-ca.pem"
    ).stdout
    for attempt in (
        "echo '{}' > /var/opt/azcmagent/agentconfig.json",
        "mv /var/opt/azcmagent/agentconfig.json /var/opt/azcmagent/status/",
        "cp /etc/hostname /var/opt/azcmagent/connection-ca.pem",
        "echo '{}' > /var/opt/azcmagent/localconfig.json",
        "touch /var/opt/azcmagent/new-file",
        "rm -f /var/opt/azcmagent/log/azcmagent.log",
    ):
        assert as_himds(host, attempt).returncode != 0, f"himds could: {attempt}"
    assert (
        host.sh("sha256sum /var/opt/azcmagent/agentconfig.json /var/opt/azcmagent/connection-ca.pem").stdout
        == before
    )
    # Where it can create names (its sticky share of log/), root follows no link it leaves.
    host.sh("rm -f /var/opt/azcmagent/log/azcmagent.log")
    assert as_himds(host, "ln -s /etc/arc-evil /var/opt/azcmagent/log/azcmagent.log").returncode == 0
    assert host.azcmagent("config", "set", "incomingconnections.ports", "22").returncode == 0
    assert host.sh("test -e /etc/arc-evil", check=False).returncode != 0, "root wrote through himds's link"
    assert stat(host, "/var/opt/azcmagent/log/azcmagent.log")[0] == "root"
    assert host.json("show")["stateDirectory"] == "as expected"


def test_one_local_user_cannot_starve_another_of_tokens(session: Session) -> None:
    host = session.lab.hosts[1]
    flood = (
        "import http.client\n"
        "codes = {}\n"
        "for _ in range(1100):\n"
        "    c = http.client.HTTPConnection('127.0.0.1', 40342)\n"
        f"    c.request('GET', {TOKEN!r}, headers={{'Metadata': 'true'}})\n"
        "    r = c.getresponse(); r.read(); c.close(); codes[r.status] = codes.get(r.status, 0) + 1\n"
        "print(codes)\n"
    )
    codes = host.sh(f"runuser -u nobody -- python3 -c {shlex.quote(flood)}", timeout=300).stdout
    assert "429" in codes, codes
    fetch = (
        "import json, urllib.request, urllib.error\n"
        f"url = 'http://127.0.0.1:40342{TOKEN}'\n"
        "try:\n"
        "    urllib.request.urlopen(urllib.request.Request(url, headers={'Metadata': 'true'}))\n"
        "except urllib.error.HTTPError as challenge:\n"
        "    secret = open(challenge.headers['WWW-Authenticate'].split('realm=')[1]).read()\n"
        "headers = {'Metadata': 'true', 'Authorization': 'Basic ' + secret}\n"
        "request = urllib.request.Request(url, headers=headers)\n"
        "print(json.load(urllib.request.urlopen(request))['access_token'])\n"
    )
    token = host.sh(f"python3 -c {shlex.quote(fetch)}").stdout.strip()
    assert token.count(".") == 2, "root got no token right after the flood"
    session.tokens.append(token)


def test_offboarding_then_no_secret_anywhere(session: Session) -> None:
    lab = session.lab
    admin = lab.plane.admin
    session.playbook(
        "offboard",
        arc_agent_service_principal_id=admin["clientId"],
        arc_agent_service_principal_secret=admin["clientSecret"],
    )
    for host in lab.hosts:
        assert lab.plane.machine(host.name) is None
    secrets = {
        "onboarding secret": lab.plane.onboarding["clientSecret"],
        "administrator secret": admin["clientSecret"],
        **{f"access token {n}": token for n, token in enumerate(session.tokens)},
    }
    places: dict[str, str] = {f"playbook output {n}": text for n, text in enumerate(session.outputs)}
    for host in lab.hosts:
        host.sh("pkill -f 'ps -eo args' || true; pkill -f 'while :; do ps' || true", check=False)
        places[f"{host.name} process lists"] = host.sh(f"cat {SAMPLER}").stdout
        places[f"{host.name} journal"] = host.sh("journalctl --no-pager -o cat").stdout
        places[f"{host.name} files"] = host.sh(
            "grep -rIa . /var/opt/azcmagent /var/log /etc /root /tmp /opt 2>/dev/null | head -c 50000000",
            timeout=300,
        ).stdout
    assert sum(len(text) for key, text in places.items() if "process lists" in key) > 10_000, (
        "too few samples"
    )
    state = lab.env.state_dir / "controlplane"
    places["control plane log"] = (state / "serve.log").read_text(errors="replace")
    places["control plane data"] = subprocess.run(
        ["grep", "-rIa", ".", str(state / "data")],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    ).stdout
    places["control plane database"] = (state / "data" / "controlplane.db").read_bytes().decode("latin-1")
    found = [
        f"{what} in {where}"
        for what, secret in secrets.items()
        for where, text in places.items()
        if secret in text
    ]
    assert found == [], found
    assert len(session.outputs) == 2 and all("changed=" in text for text in session.outputs)
