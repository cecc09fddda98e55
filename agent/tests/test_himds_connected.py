"""himds with a real control plane: heartbeats, status, managed identity tokens, disconnect.

A control plane started with ``--heartbeat-interval 5`` (Disconnected after 15 s), the real
``himds`` and ``azcmagent`` processes, the agent's files under a temporary root.
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane_env import ControlPlane, Principal, start_control_plane
from himds_helpers import wait_for
from machine_helpers import Machine, connect
from upgrade_helpers import agent_bundle

from arc_agent import ipc, ondemand
from arc_agent.himds.service import idle_step

ADMIN_ROLE = "Azure Connected Machine Resource Administrator"
TOKEN = "/metadata/identity/oauth2/token?api-version=2020-06-01&resource=https://vault.azure.net"
FLOOD = int(os.environ.get("FLOOD", "1100"))


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    base = tmp_path_factory.mktemp("cp-fast")
    server = start_control_plane(base, ["--heartbeat-interval", "5"])
    # desiredVersion must name a version of the agent package store
    published = server.cli("agent", "publish", str(agent_bundle(base / "bundle", "1.65.3500.100")))
    assert published.returncode == 0, published.stderr
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> Principal:
    return plane.principal("himds-tests-admin", ADMIN_ROLE)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    agent = Machine(tmp_path / "root")
    agent.paths.state_dir.mkdir(parents=True)
    yield agent
    if agent.himds is not None:
        agent.himds.kill()
        agent.himds.wait()


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def test_a_connected_himds_heartbeats_serves_tokens_and_goes_quiet_when_stopped(
    plane: ControlPlane, admin: Principal, machine: Machine, tmp_path: Path
) -> None:
    name = f"himds-{uuid.uuid4().hex[:8]}"
    machine.start_himds()
    shown = connect(plane, machine, tmp_path, name)

    # connect told himds: heartbeats begin at once, and show reports them.
    def heartbeat_seen() -> bool:
        status = json.loads(machine.cli("show", "status", "lastHeartbeat", "-j").stdout)
        return bool(status["status"] == "Connected" and status["lastHeartbeat"] > shown["lastHeartbeat"])

    wait_for(heartbeat_seen, 20, "a heartbeat after connect")
    resource = plane.machine(name, admin)
    assert resource is not None and resource["properties"]["status"] == "Connected"
    assert resource["properties"]["osName"] == "linux"  # the inventory himds reported

    # Managed identity: the challenge, then a token of the control plane for this machine.
    status, headers, _ = machine.local(TOKEN)
    assert status == 401
    realm = headers["www-authenticate"].removeprefix("Basic realm=")
    assert realm.startswith(str(machine.paths.tokens_dir)) and realm.endswith(".key")
    secret = Path(realm).read_text()
    status, _, body = machine.local(TOKEN, {"Authorization": f"Basic {secret}"})
    assert status == 200, body
    token = claims(body["access_token"])
    assert token["xms_mirid"].lower() == shown["resourceId"].lower()
    assert token["aud"] == "https://vault.azure.net"
    assert not Path(realm).exists(), "a key file is single use"
    status, _, body = machine.local("/metadata/instance?api-version=2020-06-01")
    assert status == 200 and body["compute"]["vmId"] == shown["vmId"]

    # No heartbeat for 3 intervals (15 s here): the control plane says Disconnected.
    machine.stop_himds()
    wait_for(
        lambda: (plane.machine(name, admin) or {}).get("properties", {}).get("status") == "Disconnected",
        30,
        "the control plane to see the machine Disconnected",
    )
    machine.start_himds()
    wait_for(
        lambda: (plane.machine(name, admin) or {}).get("properties", {}).get("status") == "Connected",
        20,
        "a restarted himds to bring the machine back",
    )

    # Disconnect: the resource goes, himds is told and stops heartbeating.
    secrets = tmp_path / "admin.json"
    secrets.write_text(
        json.dumps({"service-principal-id": admin.client_id, "service-principal-secret": admin.client_secret})
    )
    result = machine.cli("disconnect", "-t", plane.tenant_id, "--config", str(secrets))
    assert result.returncode == 0, result.stderr
    assert plane.machine(name, admin) is None
    told = ipc.ask(machine.paths.himds_socket, {"op": "status"})
    assert told is not None and told["connected"] is False
    status, _, _ = machine.local("/metadata/instance?api-version=2020-06-01")
    assert status == 404
    log = machine.stop_himds()
    assert plane.onboarding.client_secret not in log and admin.client_secret not in log
    assert "Traceback" not in log


def test_himds_renews_its_credential_and_reacts_to_new_work_at_once(
    plane: ControlPlane, admin: Principal, machine: Machine, tmp_path: Path
) -> None:
    name = f"renew-{uuid.uuid4().hex[:8]}"
    machine.paths.wake_dir.mkdir()
    machine.start_himds()
    shown = connect(plane, machine, tmp_path, name)
    # The services started on demand are woken when himds starts serving the connection.
    wait_for(lambda: ondemand.take(machine.paths, "gcad") is not None, 10, "himds to wake gcad")
    wait_for(lambda: ondemand.take(machine.paths, "extd") is not None, 10, "himds to wake extd")
    key_before = machine.paths.identity_key.read_bytes()
    cert_before = machine.paths.identity_cert.read_bytes()

    # 40 days left: the next heartbeat answers renewCredential, himds renews over a new key.
    plane.set_credential_expiry(name, dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=40))
    wait_for(lambda: machine.paths.identity_cert.read_bytes() != cert_before, 30, "a renewed credential")
    assert machine.paths.identity_key.read_bytes() != key_before, "renewal rotates the key"
    assert not machine.paths.identity_key.with_name("identity.key.pending").exists()
    expiry = json.loads(machine.cli("show", "credentialExpiry", "-j").stdout)["credentialExpiry"]
    assert expiry > shown["credentialExpiry"]
    # the new key works: heartbeats go on
    renewed_at = json.loads(machine.cli("show", "lastHeartbeat", "-j").stdout)["lastHeartbeat"]
    wait_for(
        lambda: json.loads(machine.cli("show", "lastHeartbeat", "-j").stdout)["lastHeartbeat"] > renewed_at,
        20,
        "a heartbeat signed with the new key",
    )

    # New work (agentUpgrade through the management API) reaches himds through the long-poll.
    for service in ("extd", "gcad"):
        ondemand.take(machine.paths, service)
    started = time.monotonic()
    plane.patch_machine(name, {"properties": {"agentUpgrade": {"desiredVersion": "1.65"}}}, admin)

    def upgrade_seen() -> bool:
        status = json.loads(machine.paths.himds_status.read_text())
        return bool((status.get("agentUpgrade") or {}).get("desiredVersion") == "1.65")

    wait_for(upgrade_seen, 10, "himds to see the new work")
    assert time.monotonic() - started < 5, "the long-poll answers at once, not at the next heartbeat"
    # and wakes extd for it, the service that upgrades the agent, not gcad (the self-read says
    # which service the work is for: docs/architecture.md, "Services started on demand")
    woken = [ondemand.take(machine.paths, service) for service in ("extd", "gcad")]
    assert str(woken[0]).startswith("generation ") and woken[1] is None, woken

    # Tags changed through the management API: the machine's own view follows (show, metadata).
    assert json.loads(machine.cli("show", "tags", "-j").stdout)["tags"] == {}
    plane.patch_machine(name, {"tags": {"env": "prod", "owner": "ops"}}, admin)
    wait_for(
        lambda: (
            json.loads(machine.cli("show", "tags", "-j").stdout)["tags"] == {"env": "prod", "owner": "ops"}
        ),
        10,
        "azcmagent show to show the new tags",
    )
    status, _, compute = machine.local("/metadata/instance/compute?api-version=2020-06-01")
    assert status == 200
    assert compute["tags"] == "env:prod;owner:ops"
    assert compute["tagsList"] == [{"name": "env", "value": "prod"}, {"name": "owner", "value": "ops"}]
    # tags are himds's own work: neither service was started for them
    assert [ondemand.take(machine.paths, service) for service in ("extd", "gcad")] == [None, None]
    assert "Traceback" not in machine.stop_himds()


def test_work_that_arrived_while_himds_was_down_is_read_at_its_first_heartbeat(
    plane: ControlPlane, admin: Principal, machine: Machine, tmp_path: Path
) -> None:
    """The heartbeat's answer carries the machine's generation: himds reads the machine when it
    moved (here while himds was stopped; in a fleet, between a long-poll and a heartbeat), instead
    of taking the number and long-polling past the change."""
    name = f"down-{uuid.uuid4().hex[:8]}"
    machine.start_himds()
    connect(plane, machine, tmp_path, name)
    assert "Traceback" not in machine.stop_himds()
    plane.patch_machine(name, {"tags": {"site": "dr"}}, admin)
    machine.start_himds()
    wait_for(
        lambda: json.loads(machine.cli("show", "tags", "-j").stdout)["tags"] == {"site": "dr"},
        10,
        "the tags changed while himds was down",
    )
    assert "Traceback" not in machine.stop_himds()


def test_a_new_rollout_offer_wakes_extd_at_the_next_heartbeat(
    plane: ControlPlane, machine: Machine, tmp_path: Path
) -> None:
    """An offer of the automatic rollout is no new work (no generation): himds, at each heartbeat
    of a machine with automatic upgrades, reads the machine and wakes extd (started on demand, it
    reads offers when it runs) for a version it was not offered before; gcad is not woken."""
    machine.paths.wake_dir.mkdir()
    machine.start_himds()
    connect(plane, machine, tmp_path, f"auto-{uuid.uuid4().hex[:8]}", "--enable-automatic-upgrade")

    def learned() -> bool:  # its first self-read, which wakes both services
        return "generation" in json.loads(machine.paths.himds_status.read_text())

    wait_for(learned, 10, "himds to read the machine")
    for service in ("extd", "gcad"):
        ondemand.take(machine.paths, service)
    newer = "1.66.3600.100"
    published = plane.cli("agent", "publish", str(agent_bundle(tmp_path / "bundle", newer)))
    assert published.returncode == 0, published.stderr
    wait_for(lambda: ondemand.wake_file(machine.paths, "extd").exists(), 20, "the offer to wake extd")
    assert ondemand.take(machine.paths, "extd") == f"the rollout offers agent {newer}"
    assert ondemand.take(machine.paths, "gcad") is None
    assert "Traceback" not in machine.stop_himds()


@pytest.mark.parametrize(
    ("remaining", "step"),
    [
        (300.0, (120, 0.0)),  # long-polls of at most two minutes
        (75.9, (75, 0.0)),
        (1.0, (1, 0.0)),
        (0.6, (0, 0.6)),  # under a second: sleep it off; this once spun until the heartbeat
        (0.0, (0, 0.0)),  # the heartbeat is due
        (-3.0, (0, 0.0)),
    ],
)
def test_between_heartbeats_himds_long_polls_or_sleeps_never_spins(
    remaining: float, step: tuple[int, float]
) -> None:
    assert idle_step(remaining) == step


def test_show_tells_the_truth_through_a_control_plane_outage_and_himds_is_back_within_seconds(
    machine: Machine, tmp_path: Path
) -> None:
    """Issue 10, finding 8: ``show`` said Connected throughout a 10-minute outage, and agents took
    44 s to 318 s to heartbeat again after it. Now the status says Disconnected, with what
    happened, and himds tries again every few seconds (the first call back is a heartbeat)."""
    plane = start_control_plane(tmp_path / "cp", ["--heartbeat-interval", "5"])
    try:
        machine.start_himds()
        connect(plane, machine, tmp_path, f"outage-{uuid.uuid4().hex[:8]}")

        def shown() -> dict[str, Any]:
            result: dict[str, Any] = json.loads(machine.cli("show", "-j").stdout)
            return result

        wait_for(
            lambda: shown()["lastHeartbeat"] != "" and shown()["agentErrorCode"] == "", 20, "a heartbeat"
        )
        plane.kill()
        wait_for(lambda: shown()["status"] == "Disconnected", 20, "show to say Disconnected")
        machine.paths.wake_dir.mkdir(exist_ok=True)
        during = shown()
        assert during["agentErrorCode"] == "ControlPlaneUnreachable", during
        assert "cannot reach the control plane" in during["agentErrorDetails"]
        time.sleep(12)  # several failed attempts: the back-off must stay short
        plane.restart()
        back = time.monotonic()
        wait_for(lambda: shown()["status"] == "Connected", 20, "himds to heartbeat again")
        assert time.monotonic() - back < 15, "himds took longer than its 10 s reconnect cap"
        # gcad delivers the reports it made offline, extd looks for work: both woken.
        wait_for(
            lambda: ondemand.take(machine.paths, "gcad") == "the control plane can be reached again",
            10,
            "himds to wake gcad when the control plane is back",
        )
        assert shown()["agentErrorCode"] == ""
        assert "Traceback" not in machine.stop_himds()
    finally:
        plane.stop()


def test_one_local_user_cannot_block_managed_identity_tokens_for_another(
    plane: ControlPlane, machine: Machine, tmp_path: Path
) -> None:
    """Issue 10, finding 9: 1,100 requests from ``nobody`` made root's token requests get 429
    for about 60 s. Challenges are now limited per local user."""
    machine.start_himds()
    connect(plane, machine, tmp_path, f"flood-{uuid.uuid4().hex[:8]}")
    flood = (
        "import http.client\n"
        f"c = http.client.HTTPConnection('127.0.0.1', {machine.port})\n"
        "codes = {}\n"
        f"for _ in range({FLOOD}):\n"
        f"    c.request('GET', '{TOKEN}', headers={{'Metadata': 'true'}})\n"
        "    r = c.getresponse(); r.read(); codes[r.status] = codes.get(r.status, 0) + 1\n"
        "    if r.getheader('Connection') == 'close':\n"
        f"        c = http.client.HTTPConnection('127.0.0.1', {machine.port})\n"
        "print(codes)\n"
    )
    nobody = subprocess.run(
        ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", flood],  # not a venv under /root
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    codes = eval(nobody.stdout)
    assert codes.get(429, 0) >= 1000 and codes.get(401, 0) == 64, codes
    status, headers, body = machine.local(TOKEN)  # root, right after the flood
    assert status == 401, body
    secret = Path(headers["www-authenticate"].removeprefix("Basic realm=")).read_text()
    status, _, body = machine.local(TOKEN, {"Authorization": f"Basic {secret}"})
    assert status == 200, body
    assert "Traceback" not in machine.stop_himds()


def test_himds_follows_the_state_file_even_when_the_cli_was_killed_before_telling_it(
    plane: ControlPlane, machine: Machine, tmp_path: Path
) -> None:
    """A ``disconnect`` killed after it removed ``agentconfig.json`` never tells himds; a
    ``connect`` killed after writing it neither. himds watches the file (inotify) and follows."""
    machine.start_himds()
    connect(plane, machine, tmp_path, f"watch-{uuid.uuid4().hex[:8]}")
    state = machine.paths.agent_config
    saved = state.read_bytes()

    def connected() -> bool:
        told = ipc.ask(machine.paths.himds_socket, {"op": "status"})
        return bool(told and told["connected"])

    wait_for(connected, 10, "himds connected")
    state.unlink()  # as the killed disconnect left it: no word to himds
    wait_for(lambda: not connected(), 5, "himds to see the state go")
    temporary = state.with_name(".agentconfig.json.tmp-test")
    temporary.write_bytes(saved)
    temporary.rename(state)  # as connect writes it, atomically
    wait_for(connected, 5, "himds to see the state come back")
    assert "Traceback" not in machine.stop_himds()


def test_himds_stops_at_once_whichever_thread_the_sigterm_reaches(machine: Machine) -> None:
    """The kernel hands a process's SIGTERM to any thread; one taken by a thread other than the
    main one used to leave himds in its accept loop for up to an hour (the slow stops seen in CI)."""
    machine.start_himds()
    assert machine.himds is not None
    pid = machine.himds.pid
    others = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
    assert others, "himds runs threads besides the main one (IPC, state watch)"
    libc = ctypes.CDLL(None, use_errno=True)
    sys_tgkill = 234  # x86-64
    assert libc.syscall(sys_tgkill, pid, others[-1], signal.SIGTERM) == 0, ctypes.get_errno()
    try:
        machine.himds.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log = machine.kill_himds()
        raise AssertionError(
            f"himds did not stop within 5 s of a SIGTERM to thread {others[-1]}:\n{log}"
        ) from None
    output = machine.output.read_text(encoding="utf-8", errors="replace")
    assert machine.himds.returncode == 0, output
    assert "received SIGTERM, stopping" in output and "himds stopped" in output
    machine.himds = None


def test_the_last_upgrade_attempt_reaches_the_machines_agent_upgrade(
    plane: ControlPlane, admin: Principal, machine: Machine, tmp_path: Path
) -> None:
    """docs/agent-upgrade.md: what `azcmagent upgrade` recorded goes with the next heartbeat (the
    first after himds starts: an upgrade restarts it) into ``agentUpgrade.lastAttempt*``, beside
    what the operator asked."""
    name = f"himds-{uuid.uuid4().hex[:8]}"
    machine.start_himds()
    connect(plane, machine, tmp_path, name)
    plane.patch_machine(name, {"properties": {"agentUpgrade": {"desiredVersion": "1.65"}}}, admin)
    attempt = {
        "lastAttemptDesiredVersion": "1.65.3500.100", "lastAttemptStatus": "Failed",
        "lastAttemptMessage": "the upgrade to 1.65.3500.100 failed its health check: himds does not answer",
        "lastAttemptTimestamp": "2026-12-04T20:00:00Z",
    }  # fmt: skip
    machine.stop_himds()
    machine.paths.upgrade_status.write_text(json.dumps(attempt))
    machine.start_himds()

    def reported() -> bool:
        upgrade = ((plane.machine(name, admin) or {}).get("properties") or {}).get("agentUpgrade") or {}
        return bool(upgrade.get("lastAttemptStatus") == "Failed")

    wait_for(reported, 20, "the attempt in the machine's agentUpgrade")
    upgrade = (plane.machine(name, admin) or {})["properties"]["agentUpgrade"]
    assert upgrade["desiredVersion"] == "1.65"
    assert {key: upgrade[key] for key in attempt} == attempt
    assert "Traceback" not in machine.stop_himds()
