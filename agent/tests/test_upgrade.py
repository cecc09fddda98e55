"""Agent upgrades on the host (arc_agent.upgrade, docs/agent-upgrade.md) with real archives, a real
tar and a real Python (each archive's azcmagent prints its version), real folders and links, and
the real recovery script; systemd and himds's answer are the scripted boundary."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from extd_helpers import jwks
from upgrade_helpers import archive

from arc_agent.cli.main import main
from arc_agent.cpclient.agentapi import CredentialExpired
from arc_agent.cpclient.packages import AGENT_SIGNATURE_TYPE
from arc_agent.cpclient.transport import Reply
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.extd import agent_upgrade
from arc_agent.processes import boot_id, process_start
from arc_agent.upgrade import store
from arc_agent.upgrade.layout import Layout
from arc_agent.upgrade.store import runtime_target
from arc_agent.upgrade.transaction import PENDING, Upgrade

RECOVER = Path(__file__).resolve().parents[1] / "src" / "arc_agent" / "upgrade" / "recover.sh"


class ScriptedServices:
    """systemd as the transaction sees it: which units run; a unit may be set to fail to start."""

    def __init__(self, running: Sequence[str]) -> None:
        self.active = set(running)
        self.failing: set[str] = set()
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def running(self, units: Sequence[str]) -> list[str]:
        return [unit for unit in units if unit in self.active]

    def stop(self, units: Sequence[str]) -> None:
        self.calls.append(("stop", tuple(units)))
        self.active -= set(units)

    def start(self, units: Sequence[str]) -> None:
        self.calls.append(("start", tuple(units)))
        self.active |= set(units) - self.failing


@pytest.fixture
def host(tmp_path: Path) -> tuple[Layout, str, str]:
    """/opt/azcmagent with 1.0 installed, and a 2.0 package."""
    layout = Layout(tmp_path / "opt" / "azcmagent")
    layout.prefix.mkdir(parents=True)
    first = archive(tmp_path / "a.tar.gz", "1.0")
    name = layout.stage(tmp_path / "a.tar.gz", first)
    layout.point(name, "")
    second = archive(tmp_path / "b.tar.gz", "2.0")
    return layout, name, second


def transaction(layout: Layout, services: ScriptedServices, answers: dict[str, Any]) -> Upgrade:
    return Upgrade(
        layout, layout.prefix.parent / "upgrade-status.json", connected=True, services=services,
        status=lambda: dict(answers) if answers else None, poll=0.01,
    )  # fmt: skip


def runs(layout: Layout) -> str:
    python, cli = layout.prefix / "bin" / "python3", layout.prefix / "bin" / "azcmagent"
    return subprocess.run([python, cli], capture_output=True, text=True, check=True).stdout.strip()


def test_a_healthy_upgrade_switches_and_keeps_the_previous_version(host: Any, tmp_path: Path) -> None:
    layout, first, sha = host
    name = layout.stage(tmp_path / "b.tar.gz", sha)
    services = ScriptedServices(["himdsd.service", "extd.service"])
    upgrade = transaction(layout, services, {"agentVersion": "2.0", "lastHeartBeat": "2999-01-01T00:00:00Z"})
    assert upgrade.run(name, timeout=5) == {"changed": True, "from": "1.0", "to": "2.0"}
    assert (layout.current(), layout.previous()) == (name, first)
    assert runs(layout) == "azcmagent version 2.0"
    assert services.calls == [
        ("stop", ("himdsd.service", "extd.service")),
        ("start", ("himdsd.service", "extd.service")),
    ]
    assert not (layout.prefix / PENDING).exists()
    assert upgrade.last_attempt()["lastAttemptStatus"] == "Success"
    assert (layout.prefix / "recover").read_bytes() == RECOVER.read_bytes()
    assert os.access(layout.prefix / "recover", os.X_OK)


@pytest.mark.parametrize(
    "answers, failing, problem",
    [
        pytest.param({}, (), "himds does not answer /agentstatus", id="himds-silent"),
        pytest.param({"agentVersion": "1.0"}, (), "himds answers as version 1.0, not 2.0", id="old-himds"),
        pytest.param({"agentVersion": "2.0", "lastHeartBeat": "2000-01-01T00:00:00Z"}, (),
                     "has not accepted a heartbeat", id="no-heartbeat"),
        pytest.param({"agentVersion": "2.0", "lastHeartBeat": "2999-01-01T00:00:00Z"}, ("extd.service",),
                     "extd.service does not run", id="a-service-down"),
    ],
)  # fmt: skip
def test_an_unhealthy_version_is_rolled_back_and_the_failure_recorded(
    host: Any, tmp_path: Path, answers: dict[str, Any], failing: tuple[str, ...], problem: str
) -> None:
    layout, first, sha = host
    name = layout.stage(tmp_path / "b.tar.gz", sha)
    services = ScriptedServices(["himdsd.service", "extd.service"])
    services.failing = set(failing)
    upgrade = transaction(layout, services, answers)
    with pytest.raises(AzcmError) as raised:
        upgrade.run(name, timeout=0.2)
    assert raised.value.code == ErrorCode.UPGRADE_FAILED
    assert problem in raised.value.message and "1.0 runs again" in raised.value.message
    assert (layout.current(), layout.previous()) == (first, "")
    assert runs(layout) == "azcmagent version 1.0"
    assert os.listdir(layout.versions) == [first], "the failed version's folder is gone"
    assert services.calls[-1] == ("start", ("himdsd.service", "extd.service"))
    recorded = upgrade.last_attempt()
    assert recorded["lastAttemptStatus"] == "Failed" and problem in recorded["lastAttemptMessage"]
    assert recorded["lastAttemptDesiredVersion"] == "2.0"
    assert not (layout.prefix / PENDING).exists()


def test_a_package_that_does_not_match_changes_nothing(host: Any, tmp_path: Path) -> None:
    layout, first, _ = host
    with pytest.raises(AzcmError) as raised:
        layout.stage(tmp_path / "b.tar.gz", "0" * 64)
    assert (
        raised.value.code == ErrorCode.UPGRADE_FAILED and "does not match its SHA-256" in raised.value.message
    )
    assert os.listdir(layout.versions) == [first]


def recover(layout: Layout, status: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AZCMAGENT_PREFIX": str(layout.prefix), "AZCMAGENT_UPGRADE_STATUS": str(status),
           "AZCMAGENT_RECOVER_NO_START": "1"}  # fmt: skip
    return subprocess.run(["sh", str(RECOVER)], env=env, capture_output=True, text=True, check=False)


def test_an_upgrade_cut_short_is_undone_by_the_recovery_script(host: Any, tmp_path: Path) -> None:
    layout, first, sha = host
    name = layout.stage(tmp_path / "b.tar.gz", sha)
    # as a kill -9 after the switch leaves it: 2.0 current, the pending record naming a process
    # that is gone
    gone = subprocess.Popen(["true"])
    gone.wait()
    layout.point(name, first)
    pending = {"from": first, "to": name, "previous": "", "version": "2.0", "services": "himdsd.service",
               "pid": str(gone.pid), "pidstart": "1", "boot": boot_id()}  # fmt: skip
    (layout.prefix / PENDING).write_text("".join(f"{k}={v}\n" for k, v in pending.items()))
    status = tmp_path / "upgrade-status.json"
    done = recover(layout, status)
    assert done.returncode == 0, done.stderr
    assert (layout.current(), layout.previous()) == (first, "")
    assert runs(layout) == "azcmagent version 1.0"
    assert os.listdir(layout.versions) == [first]
    recorded = json.loads(status.read_text())
    assert recorded["lastAttemptStatus"] == "Failed" and "was cut short" in recorded["lastAttemptMessage"]
    assert not (layout.prefix / PENDING).exists()
    assert recover(layout, status).returncode == 0, "nothing pending: nothing to do"


def test_the_recovery_script_leaves_a_live_upgrade_alone(host: Any, tmp_path: Path) -> None:
    layout, first, sha = host
    name = layout.stage(tmp_path / "b.tar.gz", sha)
    layout.point(name, first)
    live = subprocess.Popen(["sleep", "30"])
    try:
        pending = {"from": first, "to": name, "pid": str(live.pid), "pidstart": process_start(live.pid),
                   "boot": boot_id()}  # fmt: skip
        (layout.prefix / PENDING).write_text("".join(f"{k}={v}\n" for k, v in pending.items()))
        assert recover(layout, tmp_path / "status.json").returncode == 0
        assert layout.current() == name and (layout.prefix / PENDING).exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize(
    "args, code, said",
    [
        (["--package", "p", "--sha256", "s", "--timeout", "-5"], 23, "--timeout -5: give the seconds"),
        (["--package", "p"], 16, "or --package FILE and --sha256 HEX"),
        (["--version", "1.70", "--package", "p"], 23, "not both"),
        (["--package", "p", "--sha256", "s", "--check"], 23, "--check goes with --version"),
    ],
)
def test_bad_upgrade_arguments_get_their_code(
    capsys: pytest.CaptureFixture[str], args: list[str], code: int, said: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("azcmagent upgrade checks for root first")
    assert main(["upgrade", *args]) == code
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "asked, running, last, started",
    [
        ({"desiredVersion": "2.0.0.1", "correlationId": "C"}, "1.0", {}, ("2.0.0.1", "c")),
        ({"desiredVersion": "1.64.03414.2961"}, "1.64.3414.2961", {}, None),  # running already
        ({"desiredVersion": "1.64"}, "1.64.3414.2961", {}, None),  # a 1.64.x runs
        ({"desiredVersion": "1.65"}, "1.64.3414.2961", {}, ("1.65", "")),
        ({"enableAutomaticUpgrade": True}, "1.0", {}, None),
        (None, "1.0", {}, None),
        (
            {"desiredVersion": "2.0.0.1", "correlationId": "c"}, "1.0",
            {"lastAttemptDesiredVersion": "2.0.0.1", "lastAttemptStatus": "Failed", "correlationId": "C"},
            None,
        ),
        (  # asked again with a new correlation id: tried again
            {"desiredVersion": "2.0.0.1", "correlationId": "d"}, "1.0",
            {"lastAttemptDesiredVersion": "2.0.0.1", "lastAttemptStatus": "Failed", "correlationId": "c"},
            ("2.0.0.1", "d"),
        ),
        ({"desiredVersion": "2.0.0.1"}, "1.0", {"lastAttemptDesiredVersion": "2.0.00000.1"}, None),
        ({"desiredVersion": "two"}, "1.0", {}, None),
    ],
)  # fmt: skip
def test_a_desired_version_is_started_when_it_is_new_work(
    asked: Any, running: str, last: dict[str, Any], started: tuple[str, str] | None
) -> None:
    request = agent_upgrade.wanted(asked, running, last)
    assert (None if request is None else (request.version, request.correlation_id)) == started


@pytest.mark.parametrize(
    "asked, offered, last, started",
    [
        ({"enableAutomaticUpgrade": True}, "2.0.0.0", {}, ("2.0.0.0", "")),
        ({"enableAutomaticUpgrade": True}, "1.0.0.0", {}, None),  # not newer
        ({"enableAutomaticUpgrade": True}, None, {}, None),
        ({"enableAutomaticUpgrade": True}, "2.0.0.0", {"lastAttemptDesiredVersion": "2.0.0.0"}, None),
        ({"desiredVersion": "1.5.0.0", "enableAutomaticUpgrade": True}, "2.0.0.0", {}, ("1.5.0.0", "")),
        ({"desiredVersion": "1.1", "enableAutomaticUpgrade": True}, "2.0.0.0", {}, None),  # pinned: waits
    ],
)
def test_an_offered_version_is_taken_unless_the_operator_names_one(
    asked: Any, offered: Any, last: dict[str, Any], started: tuple[str, str] | None
) -> None:
    request = agent_upgrade.wanted(asked, "1.1.0.0", last, offered)
    assert (None if request is None else (request.version, request.correlation_id)) == started


class ScriptedStore:
    """The agent API's package routes as the store sees them, signing as the control plane does."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, packages: dict[str, bytes], target: str) -> None:
        self.key, self.data, self.target = key, packages, target
        self.tamper: dict[str, Any] = {}

    def agent_packages(self, target: str) -> list[dict[str, Any]]:
        entries = []
        for version, data in self.data.items():
            claims = {"version": version, "target": target, "sha256": hashlib.sha256(data).hexdigest(),
                      "size": len(data)}  # fmt: skip
            signature = jwt.encode(
                {**claims, **self.tamper}, self.key, algorithm="ES256",
                headers={"kid": "k1", "typ": AGENT_SIGNATURE_TYPE},
            )  # fmt: skip
            entries.append(
                {**claims, "signature": signature, "uri": f"https://cp/agent/v1/agentPackages/{version}"}
            )
        return entries if target == self.target else []

    def package_signing_keys(self) -> dict[str, Any]:
        return jwks(self.key)

    def fetch(self, uri: str, limit: int) -> bytes:
        return self.data[uri.rsplit("/", 1)[1]][:limit]


def test_packages_from_the_store_are_resolved_and_checked(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    source = ScriptedStore(
        key, {"1.70.1.0": b"old", "1.70.10.0": b"newer", "1.71.0.0": b"newest"}, runtime_target()
    )
    for wanted, version in (("1.70", "1.70.10.0"), ("latest", "1.71.0.0"), ("1.70.00001.0", "1.70.1.0")):
        got = store.download(source, wanted, tmp_path / "d")
        assert got.version == version and got.path.read_bytes() == source.data[version]
        assert got.sha256 == hashlib.sha256(source.data[version]).hexdigest()
    for wanted, code, says in (
        ("1.72", ErrorCode.UPGRADE_FAILED, "publishes no agent 1.72"),
        ("one", ErrorCode.INVALID_ARGUMENT, "is not a version"),
    ):
        with pytest.raises(AzcmError, match=says) as refused:
            store.download(source, wanted, tmp_path / "d")
        assert refused.value.code == code
    source.tamper = {"target": "cp27-vax"}  # signed for another target
    with pytest.raises(AzcmError, match=r"refused: .*target differ.*Nothing was changed"):
        store.download(source, "1.71", tmp_path / "d")
    source.tamper = {}
    other = ScriptedStore(ec.generate_private_key(ec.SECP256R1()), source.data, runtime_target())
    other.package_signing_keys = lambda: jwks(key)  # type: ignore[method-assign]
    with pytest.raises(AzcmError, match="does not verify"):
        store.download(other, "1.71", tmp_path / "d")
    assert (
        sorted(p.name for p in (tmp_path / "d").iterdir() if p.read_bytes() not in source.data.values()) == []
    )


def test_a_refusal_of_the_control_plane_is_named_with_the_upgrade_code(tmp_path: Path) -> None:
    class Refusing(ScriptedStore):
        def agent_packages(self, target: str) -> list[dict[str, Any]]:
            raise CredentialExpired(
                Reply(401, {}, b"", {"error": {"code": "CredentialExpired", "message": "old"}})
            )

    source = Refusing(ec.generate_private_key(ec.SECP256R1()), {}, runtime_target())
    with pytest.raises(
        AzcmError, match=r"refused this machine's request .*CredentialExpired: old"
    ) as refused:
        store.download(source, "1.70", tmp_path / "d")
    assert refused.value.code == ErrorCode.UPGRADE_FAILED
