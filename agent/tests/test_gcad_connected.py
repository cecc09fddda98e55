"""gcad against a running control plane (docs/machine-configuration.md, "On the host"): an
assignment made through the management API is read, its package downloaded and checked,
evaluated and reported; drift is corrected (ApplyAndAutoCorrect) or only reported
(ApplyAndMonitor); without the control plane gcad goes on and delivers its reports when it is
back; after 14 days offline it forgets; disabled and monitor mode stop it; a removed assignment
is no longer evaluated. Time is the service's clock, moved by the test."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane_env import ControlPlane, Principal, start_control_plane
from machine_helpers import Machine, connect

from arc_agent.config.settings import LocalConfig
from arc_agent.cpclient.machine import open_machine_api
from arc_agent.extd.certificate import load_or_create
from arc_agent.gcad.service import GuestConfigService
from arc_agent.logsetup import configure_logging

ADMIN_ROLE = "Azure Connected Machine Resource Administrator"
GC_API = "2024-04-05"
INTERVAL = 900.0


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def motd_package(base: Path, target: Path, version: str = "1.0.0") -> Path:
    """A package (AuditAndSet) whose one resource is the file ``target`` with "hello" in it, mode 0644."""
    text = (
        f'instance of nxFile as $nxFile1ref\n{{\n    ResourceID = "[nxFile]motd";\n'
        f'    DestinationPath = "{target}";\n    Contents = "hello";\n    Mode = "0644";\n'
        f'    ConfigurationName = "Motd";\n}};\n'
        'instance of OMI_ConfigurationDocument\n{\n    Name = "Motd";\n};\n'
    )
    path = base / "Motd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Motd.mof", text)
        archive.writestr("Motd.metaconfig.json", json.dumps({"Type": "AuditAndSet", "Version": version}))
    return path


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    base = tmp_path_factory.mktemp("cp-gcad")
    server = start_control_plane(base)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> Principal:
    return plane.principal("gcad-tests-admin", ADMIN_ROLE)


def assign(plane: ControlPlane, admin: Principal, name: str, mode: str) -> tuple[int, Any]:
    body = {
        "properties": {"guestConfiguration": {"name": "Motd", "version": "1.0.0", "assignmentType": mode}}
    }
    path = f"machines/{name}/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments/Motd"
    return plane.manage("PUT", path, admin, body, api_version=GC_API)


def assignment(plane: ControlPlane, admin: Principal, name: str, suffix: str = "") -> Any:
    path = (
        f"machines/{name}/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments/Motd{suffix}"
    )
    status, body = plane.manage("GET", path, admin, api_version=GC_API)
    assert status == 200, body
    return body


def test_gcad_evaluates_corrects_reports_and_goes_on_offline(
    tmp_path: Path, plane: ControlPlane, admin: Principal
) -> None:
    target = tmp_path / "managed" / "motd"
    published = plane.cli("configuration", "publish", str(motd_package(tmp_path, target)))
    assert published.returncode == 0 or "published already" in published.stderr, published.stderr
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    name = f"gcad-{uuid.uuid4().hex[:8]}"
    connect(plane, machine, tmp_path, name)
    clock = Clock()
    service = GuestConfigService(
        machine.paths,
        configure_logging(verbose=True, stream=None),
        interval=INTERVAL,
        clock=clock,
        poll_seconds=1,
    )
    assert assign(plane, admin, name, "ApplyAndAutoCorrect")[0] == 201

    # the first evaluation applies it and reports Compliant
    service.run_once()
    assert target.read_text() == "hello" and service.evaluations == 1
    first = assignment(plane, admin, name)["properties"]
    assert first["complianceStatus"] == "Compliant", first
    assert first["latestAssignmentReport"]["operationType"] == "Initial"
    kept = list(machine.paths.guest_config_packages_dir.glob("Motd/*.zip"))
    assert len(kept) == 1 and oct(kept[0].stat().st_mode & 0o777) == "0o600"

    # not due: nothing is evaluated; drift is corrected at the next evaluation
    service.run_once()
    assert service.evaluations == 1
    target.write_text("changed by hand")
    clock.advance(INTERVAL + 1)
    service.run_once()
    assert target.read_text() == "hello" and service.evaluations == 2
    assert (
        assignment(plane, admin, name)["properties"]["latestAssignmentReport"]["operationType"]
        == "Consistency"
    )

    # ApplyAndMonitor: applied once for the new hash, then drift is reported and left
    assert assign(plane, admin, name, "ApplyAndMonitor")[0] == 200
    assert assignment(plane, admin, name)["properties"]["complianceStatus"] == "Pending"
    service.run_once()
    assert assignment(plane, admin, name)["properties"]["complianceStatus"] == "Compliant"
    target.write_text("drifted")
    clock.advance(INTERVAL + 1)
    service.run_once()
    assert target.read_text() == "drifted"
    drifted = assignment(plane, admin, name)["properties"]
    assert drifted["complianceStatus"] == "NonCompliant"
    reasons = drifted["latestAssignmentReport"]["resources"][0]["reasons"]
    assert reasons[0]["code"] == "nxFile:Contents", reasons

    # offline: the control plane is gone; gcad corrects from what it keeps and queues the report
    assert assign(plane, admin, name, "ApplyAndAutoCorrect")[0] == 200
    service.run_once()
    before = len(assignment(plane, admin, name, "/reports")["value"])
    plane.kill()
    try:
        target.write_text("drifted offline")
        clock.advance(INTERVAL + 1)
        service.run_once()
        assert target.read_text() == "hello"
        queued = list((machine.paths.guest_config_state_dir / "reports").glob("*.json"))
        assert len(queued) == 1
    finally:
        plane.restart()
    service.run_once()
    assert not list((machine.paths.guest_config_state_dir / "reports").glob("*.json"))
    assert len(assignment(plane, admin, name, "/reports")["value"]) == before + 1

    # disabled, then monitor mode: nothing is evaluated
    for key, value in (("guestconfiguration.enabled", "false"), ("config.mode", "monitor")):
        assert machine.cli("config", "set", key, value).returncode == 0
        target.write_text("drift while off")
        clock.advance(INTERVAL + 1)
        evaluations = service.evaluations
        service.run_once()
        assert service.evaluations == evaluations and target.read_text() == "drift while off"
        assert machine.cli("config", "clear", key).returncode == 0
    # monitor mode turned guestconfiguration.enabled off as well (as the real agent does)
    assert LocalConfig.load(machine.paths.local_config).get("guestconfiguration.enabled") is False
    assert machine.cli("config", "clear", "guestconfiguration.enabled").returncode == 0

    # removed: nothing is evaluated any more
    path = f"machines/{name}/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments/Motd"
    assert plane.manage("DELETE", path, admin, api_version=GC_API)[0] == 200
    clock.advance(INTERVAL + 1)
    evaluations = service.evaluations
    service.run_once()
    assert service.evaluations == evaluations
    assert not list(machine.paths.guest_config_packages_dir.glob("Motd/*.zip"))


def test_after_14_days_without_the_control_plane_assignments_are_dropped(
    tmp_path: Path, plane: ControlPlane, admin: Principal
) -> None:
    target = tmp_path / "motd14"
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    name = f"gcad-{uuid.uuid4().hex[:8]}"
    connect(plane, machine, tmp_path, name)
    published = plane.cli("configuration", "publish", str(motd_package(tmp_path, target)))
    assert published.returncode == 0 or "published already" in published.stderr
    clock = Clock()
    service = GuestConfigService(
        machine.paths,
        configure_logging(verbose=True, stream=None),
        interval=INTERVAL,
        clock=clock,
        poll_seconds=1,
    )
    assert assign(plane, admin, name, "Audit")[0] == 201
    service.run_once()
    assert service.evaluations == 1
    plane.kill()
    try:
        clock.advance(13 * 86400)
        service.run_once()
        assert service.evaluations == 2, "still evaluated on day 13"
        clock.advance(2 * 86400)
        service.run_once()
        assert service.evaluations == 2, "dropped after 14 days"
        assert not (machine.paths.guest_config_state_dir / "assignments.json").exists()
    finally:
        plane.restart()


def test_protected_parameters_are_decrypted_applied_and_kept_out_of_reports(
    tmp_path: Path, plane: ControlPlane, admin: Principal
) -> None:
    """``configurationProtectedParameter``: sealed by the control plane to the machine's extension
    certificate (the one extd registers), decrypted by gcad's child process, applied; the value
    appears in no report, no file gcad keeps and no log; a machine whose certificate changed
    since reports NonCompliant saying so, and sets nothing."""
    target = tmp_path / "managed" / "motd"
    published = plane.cli("configuration", "publish", str(motd_package(tmp_path, target, "1.0.1")))
    assert published.returncode == 0, published.stderr
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    name = f"gcad-{uuid.uuid4().hex[:8]}"
    connect(plane, machine, tmp_path, name)
    thumbprint, pem = load_or_create(machine.paths.waagent_dir)
    opened = open_machine_api(machine.paths)
    assert opened is not None
    client, api = opened
    try:
        assert api.register_extension_certificate(pem) == thumbprint
    finally:
        client.close()
    log = tmp_path / "gcad.log"
    clock = Clock()
    service = GuestConfigService(
        machine.paths,
        configure_logging(verbose=True, stream=None, log_file=log),
        interval=INTERVAL,
        clock=clock,
        poll_seconds=1,
    )
    secret = "token=" + uuid.uuid4().hex
    body = {
        "properties": {
            "guestConfiguration": {
                "name": "Motd", "version": "1.0.1", "assignmentType": "ApplyAndAutoCorrect",
                "configurationProtectedParameter": [{"name": "[nxFile]motd;Contents", "value": secret}],
            }
        }
    }  # fmt: skip
    path = f"machines/{name}/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments/Motd"
    status, created = plane.manage("PUT", path, admin, body, api_version=GC_API)
    assert status == 201, created
    assert secret not in json.dumps(created)

    service.run_once()
    assert target.read_text() == secret, "the protected value was applied"
    properties = assignment(plane, admin, name)["properties"]
    assert properties["complianceStatus"] == "Compliant", properties
    target.write_text("drifted")
    clock.advance(INTERVAL + 1)
    service.run_once()
    assert target.read_text() == secret
    reports = assignment(plane, admin, name, "/reports")
    assert len(reports["value"]) == 2 and secret not in json.dumps(reports)
    kept = "".join(
        p.read_text(errors="replace") for p in machine.paths.guest_config_state_dir.rglob("*") if p.is_file()
    )
    assert "protectedParameters" in kept and secret not in kept, "kept encrypted only"
    assert secret not in log.read_text()

    # a new extension certificate (the old key gone), gcad started again (it keeps what it
    # decrypted in memory only): reported, nothing set
    for old in machine.paths.waagent_dir.glob(f"{thumbprint}.*"):
        old.unlink()
    target.write_text("drifted again")
    clock.advance(INTERVAL + 1)
    service = GuestConfigService(
        machine.paths, configure_logging(verbose=True, stream=None, log_file=log), interval=INTERVAL,
        clock=clock, poll_seconds=1,
    )  # fmt: skip
    service.run_once()
    assert target.read_text() == "drifted again"
    latest = assignment(plane, admin, name)["properties"]["latestAssignmentReport"]
    assert latest["complianceStatus"] == "NonCompliant"
    (reason,) = latest["resources"][0]["reasons"]
    assert reason["code"] == "GuestConfiguration:ProtectedParameters"
    assert "which this machine does not have" in reason["phrase"] and thumbprint in reason["phrase"]
