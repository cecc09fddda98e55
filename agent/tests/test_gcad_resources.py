"""gcad's resources and evaluations (docs/machine-configuration.md, "Resources" and "Evaluations"):
files and lines on real files, kernel parameters on a stand-in /proc/sys, scripts with /bin/sh;
services, packages, users and groups through a scripted host (the boundary to systemctl,
dpkg-query, apt-get, useradd...), asserting the exact commands; the three modes; a resource the
agent lacks reported NonCompliant, naming it."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from arc_agent.gcad import evaluate as gc_evaluate
from arc_agent.gcad.resources import (
    COMMAND_TIMEOUT_SECONDS,
    Completed,
    NxFile,
    NxFileLine,
    NxGroup,
    NxPackage,
    NxScript,
    NxService,
    NxSysctl,
    SystemHost,
    registry,
)


class ScriptedHost:
    """The host's commands, scripted: each argv prefix answers as told; every call is kept."""

    def __init__(self, answers: dict[tuple[str, ...], Completed] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def run(
        self, argv: Sequence[str], stdin: str = "", timeout: float = COMMAND_TIMEOUT_SECONDS
    ) -> Completed:
        self.calls.append(list(argv))
        for prefix, answer in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return answer
        return Completed(0, "", "")


def test_a_file_is_tested_and_set_atomically(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "motd"
    props = {"DestinationPath": str(target), "Contents": "hello\n", "Mode": "0640", "Ensure": "Present"}
    missing = NxFile().test(props, SystemHost())
    assert not missing.compliant and missing.reasons[0].code == "nxFile:Ensure"
    NxFile().set(props, SystemHost())
    assert target.read_text() == "hello\n" and oct(target.stat().st_mode & 0o777) == "0o640"
    assert NxFile().test(props, SystemHost()).compliant
    os.chmod(target, 0o666)
    drift = NxFile().test(props, SystemHost())
    assert [r.code for r in drift.reasons] == ["nxFile:Mode"] and "0666; wanted: 0640" in drift.reasons[
        0
    ].phrase
    NxFile().set({**props, "Ensure": "Absent"}, SystemHost())
    assert not target.exists()


def test_lines_are_added_and_unwanted_ones_removed(tmp_path: Path) -> None:
    config = tmp_path / "sshd_config"
    config.write_text("# keep me\nPermitRootLogin yes\nPort 22\n")
    os.chmod(config, 0o600)
    props = {
        "FilePath": str(config),
        "ContainsLine": "PermitRootLogin no",
        "DoesNotContainPattern": r"^\s*PermitRootLogin\s+(?!no\s*$)",
    }
    found = NxFileLine().test(props, SystemHost())
    assert not found.compliant
    assert {r.code for r in found.reasons} == {"nxFileLine:ContainsLine", "nxFileLine:DoesNotContainPattern"}
    assert any("contains 'PermitRootLogin yes'" in r.phrase for r in found.reasons)
    NxFileLine().set(props, SystemHost())
    assert config.read_text() == "# keep me\nPort 22\nPermitRootLogin no\n"
    assert oct(config.stat().st_mode & 0o777) == "0o600", "the file keeps its mode"
    assert NxFileLine().test(props, SystemHost()).compliant


def test_kernel_parameters_are_read_set_and_kept(tmp_path: Path) -> None:
    proc, conf = tmp_path / "proc", tmp_path / "sysctl.d" / "90-guestconfiguration.conf"
    (proc / "net" / "ipv4").mkdir(parents=True)
    (proc / "net" / "ipv4" / "ip_forward").write_text("1\n")
    sysctl = NxSysctl(proc, conf)
    props = {"Name": "net.ipv4.ip_forward", "Value": "0"}
    outcome = sysctl.test(props, SystemHost())
    assert not outcome.compliant and outcome.reasons[0].phrase == "net.ipv4.ip_forward is 1; wanted: 0"
    sysctl.set(props, SystemHost())
    assert (proc / "net" / "ipv4" / "ip_forward").read_text() == "0\n"
    assert conf.read_text() == "net.ipv4.ip_forward = 0\n"
    assert sysctl.test(props, SystemHost()).compliant
    assert not sysctl.test({"Name": "net.nothing.here", "Value": "1"}, SystemHost()).compliant


def test_scripts_run_by_sh() -> None:
    props = {"TestScript": "test -e /nonexistent-gcad", "SetScript": "exit 3", "GetScript": "echo got"}
    outcome = NxScript().test(props, SystemHost())
    assert not outcome.compliant and outcome.found["GetScript"] == "got"
    with pytest.raises(Exception, match="SetScript exited 3"):
        NxScript().set(props, SystemHost())


def test_a_service_is_read_and_set_through_systemctl() -> None:
    host = ScriptedHost(
        {
            ("systemctl", "show"): Completed(
                0, "LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n", ""
            )
        }
    )
    props = {"Name": "cron", "Controller": "systemd", "Enabled": True, "State": "running"}
    outcome = NxService().test(props, host)
    assert not outcome.compliant and {r.code for r in outcome.reasons} == {
        "nxService:State",
        "nxService:Enabled",
    }
    assert host.calls == [
        ["systemctl", "show", "--property=LoadState,ActiveState,UnitFileState", "cron.service"]
    ]
    NxService().set(props, host)
    assert host.calls[1:] == [["systemctl", "enable", "cron.service"], ["systemctl", "start", "cron.service"]]
    missing = ScriptedHost({("systemctl", "show"): Completed(0, "LoadState=not-found\n", "")})
    assert NxService().test(props, missing).reasons[0].phrase == "there is no service cron.service"


def test_a_package_is_read_with_dpkg_query_and_changed_with_apt_get() -> None:
    host = ScriptedHost({("dpkg-query",): Completed(0, "ii ", "")})
    present = NxPackage().test({"Name": "telnetd", "Ensure": "Absent"}, host)
    assert not present.compliant and "is installed; wanted: not installed" in present.reasons[0].phrase
    NxPackage().set({"Name": "telnetd", "Ensure": "Absent"}, host)
    assert host.calls[-1] == ["apt-get", "remove", "-y", "telnetd"]
    failing = ScriptedHost({("apt-get",): Completed(100, "", "E: Unable to locate package nope")})
    with pytest.raises(Exception, match="Unable to locate package nope"):
        NxPackage().set({"Name": "nope"}, failing)
    with pytest.raises(Exception, match="is not a Debian package name"):
        NxPackage().test({"Name": "rm -rf /"}, host)


def test_group_members_are_changed_with_gpasswd() -> None:
    host = ScriptedHost()
    NxGroup().set({"GroupName": "root", "MembersToInclude": ["daemon"]}, host)
    assert host.calls == [["gpasswd", "--add", "daemon", "root"]]


def _package(resources: str, name: str = "Demo", package_type: str = "AuditAndSet") -> gc_evaluate.Package:
    text = resources + f'instance of OMI_ConfigurationDocument\n{{\n    Name = "{name}";\n}};\n'
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}.mof", text)
        archive.writestr(f"{name}.metaconfig.json", json.dumps({"Type": package_type, "Version": "1.0.0"}))
    return gc_evaluate.read_package(buffer.getvalue())


def _assignment(mode: str, parameters: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "name": "Demo",
        "assignmentHash": "A" * 64,
        "configuration": {"name": "Demo", "version": "1.0.0", "assignmentType": mode,
                          "configurationParameter": parameters or []},
    }  # fmt: skip


def _file_package(path: Path) -> gc_evaluate.Package:
    return _package(
        f'instance of nxFile as $nxFile1ref\n{{\n    ResourceID = "[nxFile]motd";\n'
        f'    DestinationPath = "{path}";\n    Contents = "hello";\n    Mode = "0644";\n}};\n'
    )


@pytest.mark.parametrize(
    "mode, initial, corrected",
    [
        ("Audit", True, False),
        ("ApplyAndMonitor", True, True),
        ("ApplyAndMonitor", False, False),
        ("ApplyAndAutoCorrect", False, True),
        ("DeployAndAutoCorrect", False, True),
    ],
)
def test_each_mode_tests_and_sets_as_the_reference_says(
    tmp_path: Path, mode: str, initial: bool, corrected: bool
) -> None:
    path = tmp_path / "motd"
    evaluation = gc_evaluate.evaluate(
        _file_package(path),
        _assignment(mode),
        initial=initial,
        remediate=True,
        resources=registry(),
        host=SystemHost(),
    )
    assert evaluation.compliant is corrected and path.exists() is corrected
    report = evaluation.report()
    assert report["operationType"] == ("Initial" if initial else "Consistency")
    assert report["complianceStatus"] == ("Compliant" if corrected else "NonCompliant")
    (resource,) = report["resources"]
    assert resource["resourceId"] == "[nxFile]motd"
    if corrected:
        assert resource["reasons"] == [{"code": "DSC::RESOURCE::SUCCESS", "phrase": ""}]
    else:
        assert resource["reasons"][0]["code"] == "nxFile:Ensure"


def test_remediation_off_only_tests(tmp_path: Path) -> None:
    path = tmp_path / "motd"
    evaluation = gc_evaluate.evaluate(
        _file_package(path), _assignment("ApplyAndAutoCorrect"), initial=True, remediate=False,
        resources=registry(), host=SystemHost(),
    )  # fmt: skip
    assert not evaluation.compliant and not path.exists()


def test_parameters_override_the_document_and_an_unknown_resource_is_never_passed(tmp_path: Path) -> None:
    path = tmp_path / "motd"
    package = _package(
        f'instance of nxFile as $a\n{{\n    ResourceID = "[nxFile]motd";\n    DestinationPath = "{path}";\n'
        f'    Contents = "hello";\n}};\n'
        "instance of MSFT_RegistryResource as $b\n"
        '{\n    ResourceID = "[Registry]key";\n    Key = "HKLM";\n};\n'
    )
    evaluation = gc_evaluate.evaluate(
        package,
        _assignment("ApplyAndAutoCorrect", [{"name": "[nxFile]motd;Contents", "value": "from a parameter"}]),
        initial=True, remediate=True, resources=registry(), host=SystemHost(),
    )  # fmt: skip
    assert path.read_text() == "from a parameter"
    by_id = {r["resourceId"]: r for r in evaluation.report()["resources"]}
    assert by_id["[nxFile]motd"]["complianceStatus"] == "Compliant"
    unknown = by_id["[Registry]key"]
    assert unknown["complianceStatus"] == "NonCompliant" and not evaluation.compliant
    assert "this agent has no resource MSFT_RegistryResource" in unknown["reasons"][0]["phrase"]


def test_protected_values_are_applied_and_replaced_in_the_report(tmp_path: Path) -> None:
    """A protected parameter counts as a parameter; wherever the report would show its value
    (here the reason, which quotes the wanted line), ``[protected]`` stands instead."""
    path = tmp_path / "app.conf"
    path.write_text("token=old\n")
    package = _package(
        f'instance of nxFileLine as $a\n{{\n    ResourceID = "[nxFileLine]token";\n    FilePath = "{path}";\n'
        f'    ContainsLine = "token=default";\n}};\n'
    )
    secret = "token=s3cr3t-value"
    protected = [{"name": "[nxFileLine]token;ContainsLine", "value": secret}]
    audit = gc_evaluate.evaluate(
        package, _assignment("Audit"), initial=True, remediate=True, resources=registry(), host=SystemHost(),
        protected=protected,
    )  # fmt: skip
    report = json.dumps(audit.report())
    assert not audit.compliant and "does not contain the line '[protected]'" in report
    assert "s3cr3t" not in report
    applied = gc_evaluate.evaluate(
        package, _assignment("ApplyAndAutoCorrect"), initial=True, remediate=True, resources=registry(),
        host=SystemHost(), protected=protected,
    )  # fmt: skip
    assert applied.compliant and secret in path.read_text().splitlines()
    unreadable = gc_evaluate.evaluate(
        package, _assignment("ApplyAndAutoCorrect"), initial=True, remediate=True, resources=registry(),
        host=SystemHost(), unreadable="no key",
    )  # fmt: skip
    (resource,) = unreadable.report()["resources"]
    assert resource["reasons"] == [
        {"code": "GuestConfiguration:ProtectedParameters", "phrase": "protected parameters: no key"}
    ]


@pytest.mark.parametrize(
    "members, says",
    [
        (
            {"Demo.mof": "instance of X {", "Demo.metaconfig.json": "{}"},
            "Demo.mof is not a configuration document",
        ),
        ({"a/Demo.mof": "x"}, "0 .mof documents at its top"),
        (
            {"Demo.mof": 'instance of OMI_ConfigurationDocument { Name = "Demo"; };'},
            "no Demo.metaconfig.json",
        ),
    ],
)
def test_a_broken_package_is_not_evaluated(members: dict[str, str], says: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    with pytest.raises(gc_evaluate.PackageError, match=says):
        gc_evaluate.read_package(buffer.getvalue())


def test_a_package_is_checked_in_a_process_of_its_own_and_a_bad_one_refused(tmp_path: Path) -> None:
    """gcad never loads `cryptography` itself: `python -m arc_agent.gcad.verify` checks a package."""
    import subprocess
    import sys

    package = tmp_path / "p.zip"
    package.write_bytes(b"not the package")
    request = {
        "path": str(package), "expected": {"sha256": "0" * 64, "size": 15}, "signature": "x.y.z",
        "keys": {"keys": []}, "name": "Demo", "version": "1.0.0",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "arc_agent.gcad.verify"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "SHA-256" in done.stderr, done.stderr
