"""gcad's loop (docs/machine-configuration.md, "On the host"): read the machine's assignments
(woken at once by the long-poll when one changes, and at least every 5 minutes), keep them and
their packages (checked), evaluate each assignment when it is new or changed and then every
evaluation interval (15 minutes; ``GCAD_EVALUATION_INTERVAL_SECONDS`` for tests), and deliver
the reports, oldest first. Without the control plane it goes on from what it keeps, for 14 days,
and delivers the reports when the control plane is back. ``guestconfiguration.enabled false``
and monitor mode stop every evaluation; a disconnected machine forgets its assignments.

Started on demand (``ondemand.py``: himds's wake file, ``--on-demand``), gcad stays only while
its next evaluation is at most ``linger`` seconds away; else it arms a timer for it (systemd
starts gcad then) and ends. Without the control plane it ends too, its reports kept: himds
wakes it when the control plane is back."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from arc_agent.config.connection import load_state
from arc_agent.config.settings import LocalConfig, guest_configuration_off
from arc_agent.cpclient.agentapi import AgentApiError, MachineApi, RequestRefused
from arc_agent.cpclient.machine import open_machine_api, package_signing_keys
from arc_agent.cpclient.transport import ControlPlaneUnreachable, HttpsClient
from arc_agent.errors import AzcmError
from arc_agent.gcad.evaluate import Package, PackageError, evaluate, read_package
from arc_agent.gcad.resources import Host, Resource, SystemHost, registry
from arc_agent.gcad.state import GuestConfigState, Record, remove_delivered
from arc_agent.ondemand import arm, disarm, woken
from arc_agent.paths import AgentPaths

DEFAULT_INTERVAL_SECONDS = 15 * 60
RETRY_SECONDS = (2, 5, 15, 30, 60)
DISABLED_POLL_SECONDS = 10
MAX_PACKAGE_BYTES = 100 * 1024 * 1024
KEYS_FILE = "package-signing.json"
UNIT = "gcad.service"
LINGER_SECONDS = 60
"""Started on demand, gcad waits for an evaluation at most this far away instead of ending."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _systemd_timer(seconds: float | None) -> str:
    if seconds is None:
        disarm(UNIT)
        return ""
    return arm(UNIT, seconds)


class GuestConfigService:
    """One machine's gcad; ``run`` until ``close``."""

    def __init__(
        self,
        paths: AgentPaths,
        logger: logging.Logger,
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        host: Host | None = None,
        resources: Mapping[str, Resource] | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        each_round: Callable[[], None] = lambda: None,
        poll_seconds: int = 60,
        on_demand: bool = False,
        linger: float = LINGER_SECONDS,
        timer: Callable[[float | None], str] | None = None,
    ) -> None:
        self.paths = paths
        self.logger = logger
        self.interval = interval
        self.host = host or SystemHost()
        self.resources = resources if resources is not None else registry()
        self.clock = clock
        self.each_round = each_round
        """Called at the start of every round (main.py keeps gcad's CPU quota there)."""
        self.poll_seconds = poll_seconds
        """The longest long-poll: assignments are read again at least this often."""
        self.on_demand = on_demand
        self.linger = linger
        self.timer = timer or _systemd_timer
        """Arms gcad's start in so many seconds (None: takes it away); "" or what went wrong."""
        self.kept = 0
        """How many assignments the last round had (started on demand: a timer only for some)."""
        self.disconnected = False
        self.state = GuestConfigState(paths.guest_config_state_dir, paths.guest_config_packages_dir)
        self.stop = threading.Event()
        self._client: HttpsClient | None = None
        self._opened: tuple[tuple[str, str] | None, HttpsClient, MachineApi] | None = None
        self.generation = -1
        self.off = ""
        """Why gcad evaluates nothing (the setting or monitor mode), or ""."""
        self.evaluations = 0
        """How many evaluations ran (for tests and the benchmark)."""
        self._unsealed: dict[str, tuple[str, list[dict[str, str]]]] = {}
        """Per assignment, its protected parameters' envelope and what it decrypted to (memory
        only, never on disk; a new envelope is decrypted again)."""

    # --- the control plane ----------------------------------------------------------------------

    def signing_keys(self, api: MachineApi) -> dict[str, Any]:
        return package_signing_keys(api, self.paths.guest_config_state_dir / KEYS_FILE)

    def refresh(self, api: MachineApi) -> list[dict[str, Any]]:
        """The machine's assignments, read and kept (with the packages they need); what is gone
        is forgotten."""
        document = api.guest_configuration_assignments()
        assignments = [a for a in document.get("assignments", []) if isinstance(a, dict)]
        self.generation = int(document.get("generation", 0))
        for assignment in assignments:
            self._fetch_package(api, assignment)
        self.state.save_assignments(assignments, self.clock())
        names = {str(a["name"]) for a in assignments}
        self.state.forget(names)
        self._unsealed = {name: kept for name, kept in self._unsealed.items() if name in names}
        self.state.prune_packages({str(a["configuration"]["name"]) for a in assignments})
        return assignments

    def _fetch_package(self, api: MachineApi, assignment: Mapping[str, Any]) -> None:
        package = assignment.get("package")
        configuration = assignment["configuration"]
        if (
            not isinstance(package, dict)
            or self.state.package(configuration["name"], package["sha256"]) is not None
        ):
            return
        data = api.fetch(str(package["uri"]), MAX_PACKAGE_BYTES)
        staged = self.state.stage_package(data)
        try:
            request = {
                "path": str(staged),
                "expected": {"sha256": package.get("sha256"), "size": package.get("size")},
                "signature": str(package.get("signature", "")),
                "keys": self.signing_keys(api),
                "name": str(configuration["name"]),
                "version": str(configuration["version"]),
            }
            checked = subprocess.run(
                [sys.executable, "-m", "arc_agent.gcad.verify"],
                input=json.dumps(request), capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            if checked.returncode != 0:
                said = checked.stderr.strip()[-500:] or f"the check exited {checked.returncode}"
                self.logger.error("%s: the package is refused: %s", assignment["name"], said)
                return
            self.state.keep_package(configuration["name"], package["sha256"], data)
        finally:
            staged.unlink(missing_ok=True)

    def deliver(self, api: MachineApi) -> None:
        """Send the queued reports, oldest first; stop at the first the control plane cannot take."""
        for path, name, report in self.state.queued_reports():
            try:
                api.report_guest_configuration(name, report)
            except RequestRefused as refused:  # the assignment is gone, or the report is refused
                self.logger.warning("%s: report %s dropped: %s", name, report.get("reportId"), refused)
            remove_delivered(path)

    # --- evaluations ----------------------------------------------------------------------------

    def _package(self, assignment: Mapping[str, Any]) -> Package | None:
        package = assignment.get("package")
        name = assignment["configuration"]["name"]
        record = self.state.record(str(assignment["name"]))
        sha256 = str(package["sha256"]) if isinstance(package, dict) else record.package_sha256
        data = self.state.package(name, sha256) if sha256 else None
        return None if data is None else read_package(data)

    def _protected(self, assignment: Mapping[str, Any]) -> tuple[list[dict[str, str]], str]:
        """The assignment's protected parameters, decrypted in a child process (gcad itself
        never loads ``cryptography``) once per envelope and kept in memory only; or why they
        cannot be."""
        configuration = assignment["configuration"]
        envelope = configuration.get("protectedParameters")
        if not envelope:
            return [], ""
        name = str(assignment["name"])
        known = self._unsealed.get(name)
        if known is not None and known[0] == envelope:
            return known[1], ""
        request = {
            "envelope": str(envelope),
            "thumbprint": str(configuration.get("protectedParametersCertThumbprint") or ""),
            "folder": str(self.paths.waagent_dir),
        }
        unsealed = subprocess.run(
            [sys.executable, "-m", "arc_agent.gcad.unseal"],
            input=json.dumps(request), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if unsealed.returncode != 0:
            said = unsealed.stderr.strip()[-500:] or f"the decryption exited {unsealed.returncode}"
            self.logger.error("%s: protected parameters not decrypted: %s", assignment["name"], said)
            return [], said
        parameters = list(json.loads(unsealed.stdout))
        self._unsealed[name] = (str(envelope), parameters)
        return parameters, ""

    def evaluate_due(self, assignments: list[dict[str, Any]], remediate: bool) -> float:
        """Evaluate every assignment that is due; the seconds until the next one is."""
        next_due = self.interval
        for assignment in assignments:
            if self.stop.is_set():
                break
            name = str(assignment["name"])
            record = self.state.record(name)
            now = self.clock()
            initial = record.assignment_hash != assignment["assignmentHash"]
            age = (now - record.evaluated_at).total_seconds() if record.evaluated_at else None
            if not initial and age is not None and age < self.interval:
                next_due = min(next_due, self.interval - age)
                continue
            try:
                package = self._package(assignment)
                if package is None:
                    self.logger.warning("%s: its package is not here yet", name)
                    next_due = min(next_due, RETRY_SECONDS[-1])
                    continue
                protected, unreadable = self._protected(assignment)
                evaluation = evaluate(
                    package, assignment, initial=initial, remediate=remediate,
                    resources=self.resources, host=self.host, clock=self.clock,
                    protected=protected, unreadable=unreadable,
                )  # fmt: skip
            except PackageError as exc:
                self.logger.error("%s cannot be evaluated: %s", name, exc)
                next_due = min(next_due, self.interval)
                continue
            self.evaluations += 1
            report = evaluation.report()
            self.state.queue_report(name, report)
            sha256 = (
                assignment["package"]["sha256"]
                if isinstance(assignment.get("package"), dict)
                else record.package_sha256
            )
            self.state.save_record(name, Record(str(assignment["assignmentHash"]), evaluation.end, sha256))
            self.logger.info("%s (%s): %s", name, report["operationType"], report["complianceStatus"])
        return max(next_due, 1.0)

    # --- the loop ------------------------------------------------------------------------------

    def run_once(self) -> float:
        """One round; the seconds to wait before the next (a long-poll ends it earlier)."""
        self.each_round()
        config = LocalConfig.load(self.paths.local_config)
        self.off = guest_configuration_off(config)
        if self.off:
            self.logger.info("no evaluations: %s", self.off)
            return DISABLED_POLL_SECONDS
        self.disconnected = load_state(self.paths.agent_config) is None
        if self.disconnected:
            self.state.drop_all()  # disconnected: its assignments are no longer this machine's
            return DISABLED_POLL_SECONDS
        api = None
        try:
            api = self._api()
            if api is not None:
                self.refresh(api)
                self.deliver(api)
        except (ControlPlaneUnreachable, AgentApiError, AzcmError, OSError) as exc:
            self.logger.warning("the control plane cannot be reached (%s): evaluating what is kept", exc)
            self._drop_api()
            api = None
        assignments, _received = self.state.assignments(self.clock())
        self.kept = len(assignments)
        wait = self.evaluate_due(assignments, remediate=True)
        if api is not None:
            try:
                self.deliver(api)
                if self.ends(wait):
                    return wait
                api.wait_for_notification(self.generation, int(max(1, min(wait, self.poll_seconds))))
                return 0.0
            except (ControlPlaneUnreachable, AgentApiError, AzcmError, OSError) as exc:
                self.logger.warning("the control plane went away (%s)", exc)
                self._drop_api()
        # Started on demand, gcad ends until its next evaluation (himds wakes it when the control
        # plane is back); resident, it tries the control plane again within a minute.
        return wait if self.on_demand else min(wait, RETRY_SECONDS[-1])

    def ends(self, wait: float) -> bool:
        """Started on demand, whether gcad ends after a round whose next evaluation is ``wait``
        seconds away."""
        return self.on_demand and (self.disconnected or wait > self.linger)

    def _api(self) -> MachineApi | None:
        """The machine's API over one kept connection (TLS set up once, not every round), opened
        again when the connection state changes (connected elsewhere) or after a failure."""
        state = load_state(self.paths.agent_config)
        key = None if state is None else (state.vm_id, state.control_plane_url)
        if self._opened is not None and self._opened[0] == key:
            return self._opened[2]
        self._drop_api()
        opened = open_machine_api(self.paths) if key is not None else None
        if opened is None:
            return None
        self._client = opened[0]
        self._opened = (key, opened[0], opened[1])
        return opened[1]

    def _drop_api(self) -> None:
        if self._opened is not None:
            self._opened[1].close()
        self._opened = None
        self._client = None

    def run(self) -> None:
        """Until closed, or until machine configuration is turned off: then gcad ends (its unit
        shows it stopped; ``azcmagent config`` starts it again when it is turned on). Started on
        demand, also when its next evaluation is far (a timer brings it back) or it has none."""
        self._woken()
        while not self.stop.is_set():
            wait = self.run_once()
            if self.off:
                if self.on_demand:
                    self.timer(None)
                return
            if self.ends(wait) and not self._woken():
                if self.kept and not self.disconnected:
                    failed = self.timer(wait)
                    if failed:
                        self.logger.error("the next evaluation could not be scheduled: %s", failed)
                        self.stop.wait(wait)  # resident then, as if not started on demand
                        continue
                    self.logger.info("next evaluation in %d s: ending until then", wait)
                else:
                    self.timer(None)
                    self.logger.info("no assignments: ending until woken")
                return
            if wait > 0 and not self.ends(wait):
                self.stop.wait(wait)

    def _woken(self) -> bool:
        """Started on demand: its wake file taken (a wake that came meanwhile means new work)."""
        return self.on_demand and woken(self.paths, "gcad", self.logger)

    def close(self) -> None:
        """Stop: a long-poll in progress ends at once."""
        self.stop.set()
        client = self._client
        if client is not None:
            client.abort()
