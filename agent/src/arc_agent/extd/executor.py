"""Running the steps ``plan.py`` decided for one extension (docs/extensions.md): download and
check the package, unpack it, the handler's commands, its settings, the report to the control
plane; each outcome recorded (``records.py``) before the next step, so that a crash at any point
ends, after a restart, in a step done again rather than in a false "Succeeded"."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from arc_agent.cpclient.agentapi import ForeignLocation, RequestRefused
from arc_agent.cpclient.packages import PackageRefused, verify
from arc_agent.extd.handler import (
    LIB_DIR,
    LOG_DIR,
    TIMEOUTS,
    Handler,
    HandlerError,
    stop_group,
)
from arc_agent.extd.plan import (
    DOWNLOAD,
    ENABLE,
    FORGET,
    INSTALL,
    REFUSE,
    REMOVE,
    REPORT,
    SETTINGS,
    UPDATE,
    Goal,
    Installed,
    Step,
)
from arc_agent.extd.records import Records
from arc_agent.processes import process_start

MAX_SIGNATURE_BYTES = 16 * 1024
OPERATIONS = {INSTALL: "Install", UPDATE: "Update", ENABLE: "Enable", REMOVE: "Uninstall", REFUSE: "Enable"}


class Control(Protocol):
    """What the executor needs of the control plane (``cpclient.agentapi.MachineApi``)."""

    def fetch(self, uri: str, limit: int) -> bytes: ...

    def report_extension(self, name: str, report: Mapping[str, Any]) -> None: ...


@dataclass
class Commands:
    """Handler commands run the way extd runs them: under ``wrapper`` (the handler's CPU scope),
    within the handler model's time limits, and named in the extension's record while they run.
    ``azcmagent extension remove`` runs its commands through this too."""

    records: Records
    wrapper: Callable[[Handler], Sequence[str]] = field(default=lambda handler: ())
    timeouts: Mapping[str, float] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("extd"))
    environment: Mapping[str, str] = field(default_factory=dict)
    """More variables for every command: the proxy the handler's own downloads take."""

    def run(self, handler: Handler, verb: str, record: Installed, updating_from: str = "") -> str:
        """Run a handler command of ``record``'s sequence number; while it runs, the record names
        its process, so that an extd restarted meanwhile waits for it (``settle``)."""
        limit = float(self.timeouts.get(verb, TIMEOUTS[verb]))

        def started(pid: int) -> None:
            self.records.update(
                record, running_pid=pid, running_since=process_start(pid), running_until=time.time() + limit
            )

        try:
            return handler.run(
                verb, record.sequence, record.name, updating_from=updating_from, extra_env=self.environment,
                wrapper=tuple(self.wrapper(handler)), timeout=limit, on_start=started,
            )  # fmt: skip
        finally:
            self.records.update(record, running_pid=0, running_since="", running_until=0.0)

    def settle(self, record: Installed, poll: float = 1.0) -> Installed:
        """Wait for a handler command that was running when extd stopped (its process outlives
        extd: it runs in its own scope) to end, or stop it when its time limit has passed, so
        that a step done again never runs beside the one interrupted."""
        if not record.running_pid:
            return record
        pid, since = record.running_pid, record.running_since
        if since and process_start(pid) == since:
            self.logger.info(
                "%s: a handler command from before the restart runs (process %d); waiting for it",
                record.name, pid,
            )  # fmt: skip
            while process_start(pid) == since and time.time() < record.running_until:
                time.sleep(poll)
            if process_start(pid) == since:
                self.logger.warning("%s: process %d ran past its time limit; stopping it", record.name, pid)
                stop_group(pid)
        return self.records.update(record, running_pid=0, running_since="", running_until=0.0)


@dataclass
class Executor:
    api: Control
    records: Records
    signing_keys: Mapping[str, Any]
    """The package-signing key (JWKS) the agent keeps."""
    lib_dir: Path = LIB_DIR
    log_root: Path = LOG_DIR
    wrapper: Callable[[Handler], Sequence[str]] = field(default=lambda handler: ())
    """The command a handler's commands run under (a systemd scope in its slice), per handler."""
    timeouts: Mapping[str, float] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("extd"))
    settle_seconds: float = 5.0
    """How long an enable that left its work to the background is looked at before that work
    is followed between long-polls (most such work ends within it)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """More variables for every handler command (``Commands.environment``)."""

    def __post_init__(self) -> None:
        self.commands = Commands(self.records, self.wrapper, self.timeouts, self.logger, self.environment)

    def handler(self, publisher: str, type_: str, version: str) -> Handler:
        return Handler(publisher, type_, version, lib_dir=self.lib_dir, log_root=self.log_root)

    def apply(
        self, goal: Goal | None, installed: Installed | None, steps: Sequence[Step]
    ) -> Installed | None:
        """Run ``steps``; the record after them (None once forgotten)."""
        record = self.commands.settle(installed) if installed is not None else None
        package = b""
        for step in steps:
            try:
                record, package = self._step(step, goal, record, package)
            except (HandlerError, PackageRefused, ForeignLocation, RequestRefused, OSError) as exc:
                name = goal.name if goal is not None else record.name if record is not None else "?"
                self.logger.error("%s: %s failed: %s", name, step.verb, exc)
                record = self._failed(goal, record, step, str(exc))
                if record is None:
                    return None
                self._report(record, OPERATIONS.get(step.verb, "Enable"))
                return self.records.update(record, reported=True)
        return record

    def _step(
        self, step: Step, goal: Goal | None, record: Installed | None, package: bytes
    ) -> tuple[Installed | None, bytes]:
        details = step.details
        if step.verb == DOWNLOAD and goal is not None:
            expected = details["package"]
            data = self.api.fetch(str(expected["uri"]), int(expected["size"]))
            signature = self.api.fetch(str(expected["signatureUri"]), MAX_SIGNATURE_BYTES).decode(
                "ascii", "replace"
            )
            verify(data, expected, signature, self.signing_keys, publisher=goal.publisher, type_=goal.type)
            return record, data
        if step.verb == INSTALL and goal is not None:
            record = self.records.save(
                self._record(goal, str(details["version"]), "transitioning", "NotInstalled")
            )
            handler = self.handler(goal.publisher, goal.type, record.version)
            self._remove_other_versions(handler)
            handler.unpack(package)
            self.commands.run(handler, "install", record)
            return self.records.update(record, handler_state="Installed"), package
        if step.verb == UPDATE and goal is not None and record is not None:
            old = self.handler(goal.publisher, goal.type, str(details["from"]))
            new = self.handler(goal.publisher, goal.type, str(details["version"]))
            record = self.records.update(
                record, status="transitioning", sequence=goal.sequence, reported=False, following=False
            )
            new.unpack(package)
            if old.folder.exists():
                self.commands.run(old, "disable", record)
            self.commands.run(new, "update", record, updating_from=old.version)
            if old.folder.exists():
                self.commands.run(old, "uninstall", record)
                old.remove()
            record = self.records.update(record, version=new.version, handler_state="NotInstalled")
            if str(new.manifest().get("updateMode", "UpdateWithInstall")).lower() == "updatewithinstall":
                self.commands.run(new, "install", record)
            return self.records.update(record, handler_state="Installed"), package
        if step.verb == SETTINGS and goal is not None and record is not None:
            record = self.records.update(
                record, status="transitioning", sequence=goal.sequence, reported=False, following=False
            )
            handler = self.handler(goal.publisher, goal.type, record.version)
            handler.write_settings(goal.sequence, goal.settings, goal.protected, goal.thumbprint)
            return record, package
        if step.verb == ENABLE and goal is not None and record is not None:
            handler = self.handler(goal.publisher, goal.type, record.version)
            try:
                output = self.commands.run(handler, "enable", record)
            except HandlerError:
                # The handler's own account of the failure, when it wrote one, says more.
                status, code, message = handler.read_status(goal.sequence)
                if status == "error" and message:
                    raise HandlerError(message) from None
                raise
            status, code, message = handler.read_status(goal.sequence)
            # Most work a handler leaves to the background ends at once: a short look first.
            deadline = time.monotonic() + self.settle_seconds
            while status == "transitioning" and time.monotonic() < deadline:
                time.sleep(0.05)
                status, code, message = handler.read_status(goal.sequence)
            if status == "error":
                raise HandlerError(message or f"{handler.name} reported an error (code {code})")
            if status == "transitioning":
                # It goes on in the background: its status file is followed (``follow``).
                self.logger.info("%s: the handler works on in the background: %s", goal.name, message)
                record = self.records.update(
                    record, handler_state="Enabled", following=True,
                    last_message=message or f"{handler.name} is still working (its status is transitioning)",
                )  # fmt: skip
                return record, package
            record = self.records.update(
                record, status=status or "success", handler_state="Enabled", last_message=message or output
            )
            return record, package
        if step.verb == REMOVE and record is not None:
            handler = self.handler(record.publisher, record.type, str(details["version"]))
            sequence = goal.sequence if goal is not None else record.sequence
            record = self.records.update(
                record, status="transitioning", sequence=sequence, reported=False, following=False
            )
            if handler.folder.exists():
                self.commands.run(handler, "disable", record)
                self.commands.run(handler, "uninstall", record)
                handler.remove()
            record = self.records.update(
                record, status="success", handler_state="NotInstalled", last_message="removed"
            )
            return record, package
        if step.verb == REFUSE and goal is not None:
            base = record or self._record(goal, "", "error", "NotInstalled")
            changes = {"sequence": goal.sequence, "status": "error", "reported": False}
            return self.records.update(base, **changes, last_message=str(details["message"])), package
        if step.verb == REPORT and record is not None:
            self._report(record, "Uninstall" if goal is not None and goal.state == "deleted" else "Enable")
            return self.records.update(record, reported=True), package
        if step.verb == FORGET and record is not None:
            self.records.forget(record.name)
            return None, package
        raise HandlerError(f"the step {step.verb} cannot run here (no goal or no record)")

    def heartbeat(self, record: Installed, now: float) -> Installed:
        """Report an enabled handler's heartbeat when it changed (``reportHeartbeat`` handlers):
        not ready is a ``warning`` with the handler's message, ready again is ``success``."""
        if record.handler_state != "Enabled" or record.status not in ("success", "warning"):
            return record
        found = self.handler(record.publisher, record.type, record.version).read_heartbeat(now)
        if found is None:
            return record
        ready, message = found
        text = f"{'ready' if ready else 'notready'}: {message}"
        if text == record.heartbeat:
            return record
        status = "success" if ready else "warning"
        self.logger.info("%s: heartbeat %s", record.name, text)
        record = self.records.update(record, status=status, heartbeat=text, reported=False)
        shown = record.last_message if ready else f"{record.name} is not ready (its heartbeat): {message}"
        self.api.report_extension(
            record.name,
            {
                "sequenceNumber": record.sequence, "status": status, "code": 0, "message": shown[-4000:],
                "operation": "Enable", "typeHandlerVersion": record.version or None,
            },
        )  # fmt: skip
        return self.records.update(record, reported=True)

    def _record(self, goal: Goal, version: str, status: str, handler_state: str) -> Installed:
        return Installed(
            name=goal.name,
            publisher=goal.publisher,
            type=goal.type,
            version=version,
            sequence=goal.sequence,
            status=status,
            reported=False,
            handler_state=handler_state,
        )

    def _failed(
        self, goal: Goal | None, record: Installed | None, step: Step, message: str
    ) -> Installed | None:
        if record is not None:
            base = record
        elif goal is not None:
            base = self._record(goal, "", "error", "NotInstalled")
        else:
            return None
        changes: dict[str, Any] = {"status": "error", "reported": False, "last_message": message}
        if goal is not None:
            changes["sequence"] = goal.sequence
        if step.verb in (DOWNLOAD, INSTALL, UPDATE):
            changes["handler_state"] = "NotInstalled"
        return self.records.update(base, **changes)

    def _report(self, record: Installed, operation: str) -> None:
        self.api.report_extension(
            record.name,
            {
                "sequenceNumber": record.sequence,
                # "transitioning" left by a step that did not finish is not the handler's own
                "status": "error" if record.busy else record.status,
                "code": 1 if record.status == "error" or record.busy else 0,
                "message": record.last_message[-4000:],
                "operation": operation,
                "typeHandlerVersion": record.version or None,
            },
        )

    def follow(self, record: Installed) -> Installed:
        """Report how a handler working in the background goes on (its status file): a new
        message while it is ``transitioning``, and its end (``success``, ``warning``, ``error``)."""
        if not record.following:
            return record
        handler = self.handler(record.publisher, record.type, record.version)
        status, code, message = handler.read_status(record.sequence)
        if status in ("", "transitioning"):
            if not message or message == record.last_message:
                return record
            record = self.records.update(record, last_message=message, reported=False)
        else:
            if status not in ("success", "warning", "error"):
                status, message = "error", f"{handler.name} reported the unknown status {status!r}: {message}"
            self.logger.info("%s: the handler finished in the background: %s", record.name, status)
            record = self.records.update(
                record, status=status, following=False, reported=False,
                last_message=message or f"{handler.name} reported {status} (code {code})",
            )  # fmt: skip
        self._report(record, "Enable")
        return self.records.update(record, reported=True)

    def _remove_other_versions(self, handler: Handler) -> None:
        """What an interrupted install or update left of other versions of this handler."""
        if not self.lib_dir.is_dir():
            return
        for path in self.lib_dir.glob(f"{handler.name}-*"):
            if path != handler.folder and path.is_dir() and not os.path.islink(path):
                Handler(handler.publisher, handler.type, path.name[len(handler.name) + 1 :],
                        lib_dir=self.lib_dir, log_root=self.log_root).remove()  # fmt: skip
