"""The extension service's steps run for real (arc_agent.extd.executor with plan.py): real handler
packages (a shell script), signed as the control plane signs them, unpacked and run in a
temporary folder; the control plane's side (downloads, status reports) is scripted, as the
boundary it is."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import subprocess
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from extd_helpers import jwks

from arc_agent.cpclient.packages import SIGNATURE_TYPE
from arc_agent.extd.executor import Executor
from arc_agent.extd.plan import Goal, Policy, plan
from arc_agent.extd.records import Records
from arc_agent.processes import process_start

BASE = "https://cp:8443/agent/v1/extensionPackages/Microsoft.Azure.Extensions/CustomScript"
KEY = ec.generate_private_key(ec.SECP256R1())
SCRIPT = """#!/bin/sh
echo "$1 $AZURE_GUEST_AGENT_EXTENSION_VERSION" >> calls.log
case "$1" in
  enable)
    if grep -q '"fail"' "config/$ConfigSequenceNumber.settings"; then echo "the command failed"; exit 3; fi
    if grep -q '"hang"' "config/$ConfigSequenceNumber.settings"; then
      sleep 60 & echo $! > child.pid; wait
    fi
    if grep -q '"background"' "config/$ConfigSequenceNumber.settings"; then
      # works on in the background (still holding the command's output), as the model allows
      st="status/$ConfigSequenceNumber.status"
      echo '[{"status": {"status": "transitioning", "formattedMessage": {"message": "working"}}}]' > "$st"
      (while [ ! -e go ]; do sleep 0.05; done
       printf '[{"status": {"status": "%s", "formattedMessage": {"message": "done"}}}]' "$(cat go)" >"$st.new"
       mv "$st.new" "$st") &
      echo $! > background.pid
      exit 0
    fi
    echo "enabled $ConfigSequenceNumber" ;;
esac
"""


def handler_zip() -> bytes:
    commands = {
        f"{verb}Command": f"bin/handler.sh {verb}"
        for verb in ("install", "enable", "disable", "uninstall", "update")
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("HandlerManifest.json", json.dumps([{"version": 1.0, "handlerManifest": commands}]))
        info = zipfile.ZipInfo("bin/handler.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(info, SCRIPT)
    return buffer.getvalue()


class ScriptedControl:
    """The control plane as the executor sees it: published packages and the reports it got."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.reports: list[tuple[str, dict[str, Any]]] = []

    def publish(self, version: str, data: bytes) -> dict[str, Any]:
        claims = {"publisher": "Microsoft.Azure.Extensions", "type": "CustomScript", "version": version,
                  "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}  # fmt: skip
        uri = f"{BASE}/{version}"
        self.files[uri] = data
        self.files[uri + "/signature"] = jwt.encode(
            claims, KEY, algorithm="ES256", headers={"kid": "k1", "typ": SIGNATURE_TYPE}
        ).encode()
        return {
            **{k: claims[k] for k in ("version", "sha256", "size")},
            "uri": uri,
            "signatureUri": uri + "/signature",
        }

    def fetch(self, uri: str, limit: int) -> bytes:
        return self.files[uri][: limit + 1]

    def report_extension(self, name: str, report: Mapping[str, Any]) -> None:
        self.reports.append((name, dict(report)))


@pytest.fixture
def world(tmp_path: Path) -> tuple[ScriptedControl, Executor]:
    control = ScriptedControl()
    executor = Executor(
        control,
        Records(tmp_path / "records"),
        jwks(KEY),
        lib_dir=tmp_path / "lib",
        log_root=tmp_path / "logs",
        settle_seconds=0.0,
    )
    return control, executor


def goal(
    control: ScriptedControl, sequence: int, version: str = "2.1.0", state: str = "enabled", **settings: Any
) -> Goal:
    package = control.publish(version, handler_zip()) if version else {}
    return Goal.from_wire({
        "name": "script", "publisher": "Microsoft.Azure.Extensions", "type": "CustomScript",
        "sequenceNumber": sequence, "state": state, "package": package, "settings": settings,
    })  # fmt: skip


def converge(executor: Executor, goals: list[Goal], policy: Policy | None = None) -> None:
    installed = executor.records.load()
    by_name = {g.name.lower(): g for g in goals}
    for name, steps in plan(goals, installed, policy or Policy()).items():
        executor.apply(by_name.get(name), installed.get(name), steps)


def test_an_extension_goes_through_install_settings_update_and_removal(world: Any) -> None:
    control, executor = world
    converge(executor, [goal(control, 1, commandToExecute="date")])
    record = executor.records.load()["script"]
    assert (record.version, record.sequence, record.status, record.handler_state, record.reported) == (
        "2.1.0", 1, "success", "Enabled", True,
    )  # fmt: skip
    assert control.reports[-1] == ("script", {
        "sequenceNumber": 1, "status": "success", "code": 0, "message": "enabled 1", "operation": "Enable",
        "typeHandlerVersion": "2.1.0",
    })  # fmt: skip
    folder = executor.lib_dir / "Microsoft.Azure.Extensions.CustomScript-2.1.0"
    assert json.loads((folder / "config" / "1.settings").read_text())["runtimeSettings"][0][
        "handlerSettings"
    ] == {"publicSettings": {"commandToExecute": "date"}}
    converge(
        executor, [goal(control, 1, commandToExecute="date")]
    )  # nothing new: nothing runs, nothing reported
    assert len(control.reports) == 1
    converge(executor, [goal(control, 2, version="2.2.0", commandToExecute="date")])
    assert (
        not folder.exists() and (executor.lib_dir / "Microsoft.Azure.Extensions.CustomScript-2.2.0").is_dir()
    )
    assert executor.records.load()["script"].version == "2.2.0"
    assert control.reports[-1][1]["sequenceNumber"] == 2 and control.reports[-1][1]["status"] == "success"
    converge(executor, [goal(control, 3, version="2.2.0", state="deleted")])
    assert not list(executor.lib_dir.glob("Microsoft.Azure.Extensions.CustomScript-*"))
    assert (
        control.reports[-1][1]["sequenceNumber"] == 3 and control.reports[-1][1]["operation"] == "Uninstall"
    )
    converge(executor, [])  # the control plane forgot it: so does the machine
    assert executor.records.load() == {}


def test_a_package_that_does_not_match_runs_nothing_and_is_reported(world: Any) -> None:
    control, executor = world
    wanted = goal(control, 1)
    control.files[wanted.package["uri"]] += b"tampered"
    converge(executor, [wanted])
    assert not executor.lib_dir.exists() or not list(executor.lib_dir.iterdir())
    _name, report = control.reports[-1]
    assert report["status"] == "error" and "bytes, not the" in report["message"]
    assert executor.records.load()["script"].handler_state == "NotInstalled"
    # the same goal again is not retried (its sequence number is handled); a new one is
    control.files[wanted.package["uri"]] = handler_zip()
    converge(executor, [wanted])
    assert len(control.reports) == 1
    converge(executor, [goal(control, 2)])
    assert control.reports[-1][1]["status"] == "success"


def test_a_failing_handler_and_local_policy_are_reported_with_their_messages(world: Any) -> None:
    control, executor = world
    converge(executor, [goal(control, 1, fail=True)])
    report = control.reports[-1][1]
    assert report["status"] == "error" and "failed with exit code 3: the command failed" in report["message"]
    converge(executor, [goal(control, 2)], Policy(blocklist=("Microsoft.Azure.Extensions/CustomScript",)))
    report = control.reports[-1][1]
    assert report["status"] == "error" and "extensions.blocklist" in report["message"]
    assert report["sequenceNumber"] == 2


def test_an_install_cut_short_is_done_again_from_the_start(world: Any) -> None:
    control, executor = world
    wanted = goal(control, 1)
    converge(executor, [wanted])
    record = executor.records.load()["script"]
    # as a crash in the middle of the install leaves it: the record says transitioning
    executor.records.update(record, status="transitioning", handler_state="NotInstalled", reported=False)
    (executor.lib_dir / "Microsoft.Azure.Extensions.CustomScript-2.1.0" / "bin" / "handler.sh").unlink()
    converge(executor, [wanted])
    assert executor.records.load()["script"].status == "success"
    assert (
        executor.lib_dir / "Microsoft.Azure.Extensions.CustomScript-2.1.0" / "bin" / "handler.sh"
    ).exists()


def test_a_handler_that_reports_heartbeat_is_reported_when_it_changes(world: Any) -> None:
    control, executor = world
    converge(executor, [goal(control, 1, commandToExecute="date")])
    folder = executor.lib_dir / "Microsoft.Azure.Extensions.CustomScript-2.1.0"
    record = executor.records.load()["script"]
    assert executor.heartbeat(record, time.time()) == record, "no reportHeartbeat: nothing read"
    manifest = json.loads((folder / "HandlerManifest.json").read_text())
    manifest[0]["handlerManifest"]["reportHeartbeat"] = True
    (folder / "HandlerManifest.json").write_text(json.dumps(manifest))
    reports = len(control.reports)

    record = executor.heartbeat(record, time.time())  # no heartbeat written yet
    assert (record.status, control.reports[-1][1]["status"]) == ("warning", "warning")
    assert "has not written its heartbeat" in control.reports[-1][1]["message"]
    heartbeat = folder / "heartbeat.log"
    waiting = {"status": "NotReady", "code": 1, "Message": "waiting for the service"}
    heartbeat.write_text(json.dumps([{"version": 1.0, "heartbeat": waiting}]))
    record = executor.heartbeat(record, time.time())
    assert control.reports[-1][1]["message"] == "script is not ready (its heartbeat): waiting for the service"
    assert executor.heartbeat(record, time.time()) == record and len(control.reports) == reports + 2, (
        "same: once"
    )
    heartbeat.write_text(json.dumps([{"version": 1.0, "heartbeat": {"status": "ready", "message": "up"}}]))
    record = executor.heartbeat(record, time.time())
    assert (record.status, control.reports[-1][1]) == ("success", {
        "sequenceNumber": 1, "status": "success", "code": 0, "message": "enabled 1", "operation": "Enable",
        "typeHandlerVersion": "2.1.0",
    })  # fmt: skip
    record = executor.heartbeat(record, time.time() + 601)
    assert "heartbeat is stale" in control.reports[-1][1]["message"] and record.status == "warning"
    assert executor.records.load()["script"].reported is True


def test_a_handler_that_finishes_in_the_background_is_followed_to_its_end(world: Any) -> None:
    control, executor = world
    converge(executor, [goal(control, 1, background=True)])
    folder = executor.lib_dir / "Microsoft.Azure.Extensions.CustomScript-2.1.0"
    pid = int((folder / "background.pid").read_text())
    assert process_start(pid), "enable returned while its background process (holding its output) runs"
    record = executor.records.load()["script"]
    assert (record.status, record.following, record.handler_state) == ("transitioning", True, "Enabled")
    assert control.reports[-1][1]["status"] == "transitioning"
    assert control.reports[-1][1]["message"] == "working"
    converge(executor, [goal(control, 1, background=True)])
    assert executor.follow(record) == record and len(control.reports) == 1, "nothing new: nothing done"

    (folder / "go").write_text("success")
    while process_start(pid):
        time.sleep(0.05)
    record = executor.follow(record)
    assert (record.status, record.following, record.reported) == ("success", False, True), record.last_message
    assert control.reports[-1][1] == {
        "sequenceNumber": 1, "status": "success", "code": 0, "message": "done", "operation": "Enable",
        "typeHandlerVersion": "2.1.0",
    }  # fmt: skip

    # the next configuration ends in an error in the background: reported as the handler's
    (folder / "go").unlink()
    converge(executor, [goal(control, 2, background=True)])
    (folder / "go").write_text("error")
    pid = int((folder / "background.pid").read_text())
    while process_start(pid):
        time.sleep(0.05)
    record = executor.follow(executor.records.load()["script"])
    assert (record.status, control.reports[-1][1]["status"], control.reports[-1][1]["code"]) == (
        "error",
        "error",
        1,
    )


def test_a_command_over_its_time_limit_is_stopped_with_its_children(world: Any) -> None:
    control, executor = world
    executor.commands.timeouts = {"enable": 1}
    converge(executor, [goal(control, 1, hang=True)])
    record = executor.records.load()["script"]
    assert record.status == "error" and "did not finish within 1 s and was stopped" in record.last_message
    child = int(
        (executor.lib_dir / "Microsoft.Azure.Extensions.CustomScript-2.1.0" / "child.pid").read_text()
    )
    assert process_start(child) == "", "the command's child was stopped with it"
    assert record.running_pid == 0


def test_a_command_left_running_by_a_restart_is_waited_for_or_stopped(world: Any) -> None:
    control, executor = world
    converge(executor, [goal(control, 1)])
    record = executor.records.load()["script"]
    # as extd's crash leaves it: the record names a command whose process outlived extd
    orphan = subprocess.Popen(["sleep", "0.5"], start_new_session=True)
    left = executor.records.update(
        record, status="transitioning", running_pid=orphan.pid, running_since=process_start(orphan.pid),
        running_until=time.time() + 60,
    )  # fmt: skip
    settled = executor.commands.settle(left, poll=0.05)
    assert orphan.poll() is not None, "waited until it ended"
    assert (settled.running_pid, executor.records.load()["script"].running_pid) == (0, 0)

    overdue = subprocess.Popen(["sleep", "60"], start_new_session=True)
    left = executor.records.update(
        record,
        running_pid=overdue.pid,
        running_since=process_start(overdue.pid),
        running_until=time.time() - 1,
    )
    executor.commands.settle(left)
    assert overdue.wait(timeout=10) == -9, "past its time limit: stopped"

    # a process id now used by another process is not waited for
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    left = executor.records.update(
        record, running_pid=other.pid, running_since="1", running_until=time.time() + 60
    )
    executor.commands.settle(left)
    assert other.poll() is None
    other.kill()
    other.wait()
