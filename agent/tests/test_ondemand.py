"""Services started on demand (docs/architecture.md, "Services started on demand"): himds's wake
files, extd and gcad ending when they have nothing to do (against a running control plane), and
the timer gcad arms for its next evaluation (systemd's tools scripted: the boundary)."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from controlplane_env import ControlPlane, Principal, start_control_plane
from himds_helpers import wait_for
from machine_helpers import Machine, connect
from test_gcad_connected import assign, motd_package

from arc_agent import ondemand
from arc_agent.extd.service import ExtensionService
from arc_agent.gcad.service import GuestConfigService
from arc_agent.logsetup import configure_logging
from arc_agent.paths import AgentPaths

ADMIN_ROLE = "Azure Connected Machine Resource Administrator"


class Systemd:
    """systemctl and systemd-run as the on-demand code calls them: argv recorded, answers scripted."""

    def __init__(self, refuse: str = "") -> None:
        self.calls: list[list[str]] = []
        self.refuse = refuse

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append([Path(argv[0]).name, *argv[1:]])
        if self.refuse and Path(argv[0]).name == "systemd-run":
            return subprocess.CompletedProcess(list(argv), 1, "", self.refuse)
        return subprocess.CompletedProcess(list(argv), 0, "", "")


def test_a_wake_file_is_written_taken_once_and_needs_its_directory(tmp_path: Path) -> None:
    paths = AgentPaths.under(tmp_path)
    assert ondemand.wake(paths, "generation 3") == []  # no wake directory: no path units either
    paths.wake_dir.mkdir(parents=True)
    assert ondemand.wake(paths, "generation 3") == ["extd", "gcad"]
    assert oct(ondemand.wake_file(paths, "gcad").stat().st_mode & 0o777) == "0o640"
    assert ondemand.take(paths, "extd") == "generation 3"
    assert ondemand.take(paths, "extd") is None
    assert ondemand.wake(paths, "again", ["gcad"]) == ["gcad"]
    assert ondemand.take(paths, "gcad") == "again"


def test_only_the_services_whose_generation_moved_have_work() -> None:
    before = {"extd": 4, "gcad": 2}
    assert ondemand.with_work(before, {"extd": 5, "gcad": 2}) == ("extd",)
    assert ondemand.with_work(before, {"extd": 4, "gcad": 6}) == ("gcad",)
    assert ondemand.with_work(before, {"extd": 4, "gcad": 2}) == ()  # the agent's own work (tags)
    assert ondemand.with_work(None, {"extd": 4, "gcad": 2}) == ("extd", "gcad")  # himds just started
    assert ondemand.with_work(before, None) == ("extd", "gcad")  # a control plane that does not say
    assert ondemand.generations_of({"extd": 3, "gcad": 0, "more": 1}) == {"extd": 3, "gcad": 0}
    bad_ones: tuple[object, ...] = (
        None,
        [],
        {"extd": 3},
        {"extd": "3", "gcad": 0},
        {"extd": True, "gcad": 0},
    )
    for bad in bad_ones:
        assert ondemand.generations_of(bad) is None, bad


def test_the_timer_replaces_the_one_before_is_part_of_the_path_unit_and_says_why_it_failed() -> None:
    systemd = Systemd()
    assert ondemand.arm("gcad.service", 899.2, run=systemd) == ""
    assert systemd.calls == [
        ["systemctl", "stop", "gcad.timer"],
        [
            "systemd-run", "--quiet", "--on-active=900s", "--unit=gcad.service",
            "--timer-property=AccuracySec=1s", "--timer-property=RemainAfterElapse=no",
            "--timer-property=PartOf=gcad.path",
        ],
    ]  # fmt: skip
    refused = Systemd(refuse="Failed to start transient timer unit: Access denied")
    assert (
        ondemand.arm("gcad.service", 0.2, run=refused)
        == "Failed to start transient timer unit: Access denied"
    )
    assert "--on-active=1s" in refused.calls[1]
    ondemand.disarm("gcad.service", run=systemd)
    assert systemd.calls[-1] == ["systemctl", "stop", "gcad.timer"]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    server = start_control_plane(tmp_path_factory.mktemp("cp-ondemand"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> Principal:
    return plane.principal("ondemand-tests-admin", ADMIN_ROLE)


@pytest.fixture
def connected(tmp_path: Path, plane: ControlPlane) -> tuple[Machine, str]:
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    machine.paths.wake_dir.mkdir()
    name = f"ondemand-{uuid.uuid4().hex[:8]}"
    connect(plane, machine, tmp_path, name)
    return machine, name


def test_extd_on_demand_takes_its_wake_does_the_work_and_ends_and_a_wake_meanwhile_keeps_it(
    connected: tuple[Machine, str],
) -> None:
    paths = connected[0].paths
    ondemand.wake(paths, "the agent service started", ["extd"])
    service = ExtensionService(paths, configure_logging(verbose=True, stream=None), on_demand=True, linger=2)
    thread = threading.Thread(target=service.run, daemon=True)
    started = time.monotonic()
    thread.start()
    wait_for(lambda: not ondemand.wake_file(paths, "extd").exists(), 30, "extd takes its wake file")
    # A wake written while it runs (himds saw more work) is another round, not the end.
    wait_for(lambda: service.generation >= 0, 30, "extd's first round")
    ondemand.wake(paths, "generation 9", ["extd"])
    thread.join(60)
    assert not thread.is_alive(), "extd did not end with nothing to do"
    assert not ondemand.wake_file(paths, "extd").exists()
    assert time.monotonic() - started >= 2  # it lingered before it ended
    # Registered once per machine: a second start does not register the certificate again.
    registered = (paths.extension_state_dir / "certificate-registered.json").read_text()
    again = ExtensionService(paths, configure_logging(verbose=True, stream=None), on_demand=True, linger=0)
    again.run()
    assert again.registered.is_set()
    assert (paths.extension_state_dir / "certificate-registered.json").read_text() == registered


def test_extd_on_demand_ends_at_once_without_a_connection_or_a_control_plane(tmp_path: Path) -> None:
    bare = Machine(tmp_path / "root")
    bare.paths.state_dir.mkdir(parents=True)
    service = ExtensionService(bare.paths, configure_logging(verbose=True, stream=None), on_demand=True)
    finished = threading.Thread(target=service.run, daemon=True)
    finished.start()
    finished.join(10)
    assert not finished.is_alive()


def test_gcad_on_demand_arms_its_next_evaluation_and_ends_or_stays_when_it_is_near(
    tmp_path: Path, plane: ControlPlane, admin: Principal, connected: tuple[Machine, str]
) -> None:
    machine, name = connected
    target = tmp_path / "managed" / "motd"
    published = plane.cli("configuration", "publish", str(motd_package(tmp_path, target)))
    assert published.returncode == 0 or "published already" in published.stderr, published.stderr
    armed: list[float | None] = []

    def timer(seconds: float | None) -> str:
        armed.append(seconds)
        return ""

    logger = configure_logging(verbose=True, stream=None)
    # No assignment: it ends, and no timer is left.
    idle = GuestConfigService(machine.paths, logger, interval=900, on_demand=True, timer=timer)
    idle.run()
    assert armed == [None] and idle.evaluations == 0
    # An assignment: evaluated, then a timer for its next evaluation (the interval), and it ends.
    assert assign(plane, admin, name, "ApplyAndAutoCorrect")[0] == 201
    ondemand.wake(machine.paths, "generation 2", ["gcad"])
    service = GuestConfigService(machine.paths, logger, interval=900, on_demand=True, timer=timer)
    service.run()
    assert target.read_text() == "hello" and service.evaluations == 1
    assert len(armed) == 2 and 890 < (armed[1] or 0) <= 900
    assert not ondemand.wake_file(machine.paths, "gcad").exists()
    # An evaluation near (a 2 s interval): it stays and evaluates again, until closed.
    near = GuestConfigService(machine.paths, logger, interval=2, on_demand=True, timer=timer, poll_seconds=1)
    thread = threading.Thread(target=near.run, daemon=True)
    thread.start()
    wait_for(lambda: near.evaluations >= 2, 30, "gcad evaluates again without ending")
    near.close()
    thread.join(15)
    assert len(armed) == 2
    # A timer systemd refuses: gcad stays (resident) rather than lose its evaluations.
    refused = GuestConfigService(
        machine.paths,
        logger,
        interval=900,
        on_demand=True,
        timer=lambda seconds: "no systemd",
        poll_seconds=1,
    )
    thread = threading.Thread(target=refused.run, daemon=True)
    thread.start()
    time.sleep(3)
    assert thread.is_alive()
    refused.close()
    thread.join(15)
