"""What himds does for a connected machine: heartbeats, notifications, credential renewal.

One worker thread per connection state (docs/agent-protocol.md §3, §7):

- a heartbeat at start, then every ``heartbeatIntervalSeconds`` (from the control plane) with
  ±10 % jitter, so that a fleet started together does not beat together;
- between heartbeats the thread sits in the notifications long-poll (the longest the control
  plane allows), so new work is seen at once and an idle agent makes one request every two
  minutes and wakes for nothing else;
- an unreachable control plane is tried again every 1 to 10 s (the status says Disconnected
  meanwhile, and the first call that gets through is a heartbeat); an answer with
  ``Retry-After`` is waited out; other failures back off from 5 s to 5 minutes (±20 %);
- ``renewCredential`` renews at once, over a new key (written aside first, switched when the
  answer arrives; docs/agent-protocol.md §5.3);
- ``CredentialExpired`` stops all calls: only a new connect heals (status ``Expired``).

New work is read with the machine self-read (§5.6); its ``agentUpgrade`` and the resource's
``tags`` (changed through the management API after ``connect``) go to the status, so that
``show`` and the instance metadata follow the resource. What it learns goes to
``himds-status.json`` (atomically), which ``azcmagent show`` reads. A
``reload`` over the IPC socket (connect, disconnect) stops the worker and starts a new one for
the new state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from arc_agent import __version__
from arc_agent.config.connection import WAY_OUT, ConnectionState, load_state
from arc_agent.config.statedir import state_lock
from arc_agent.config.upgrade_status import read_last_attempt
from arc_agent.cpclient.agentapi import (
    AgentApiError,
    Cloned,
    CredentialExpired,
    MachineApi,
    RequestRefused,
)
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.cpclient.transport import ControlPlaneUnreachable, HttpsClient
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import write_json_atomic
from arc_agent.identity.jws import AssertionSigner
from arc_agent.identity.signer import generate_key_file, load_machine_signer
from arc_agent.identity.store import MachineIdentity
from arc_agent.memory import release_free_memory
from arc_agent.ondemand import EXTENSION_SERVICE, SERVICES, generations_of, wake, with_work
from arc_agent.paths import AgentPaths
from arc_agent.systemd import service_states

LONG_POLL_SECONDS = 120
BACKOFF_FIRST = 5.0
BACKOFF_MAX = 300.0
RECONNECT_FIRST = 1.0
RECONNECT_MAX = 10.0
ASSERTION_RETRY_MAX = 30.0
DEFAULT_INTERVAL = 300


def utc_text(moment: dt.datetime | None = None) -> str:
    return (moment or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def jittered(seconds: float, fraction: float) -> float:
    return seconds * random.uniform(1 - fraction, 1 + fraction)  # noqa: S311 - jitter, not a secret


def idle_step(remaining: float) -> tuple[int, float]:
    """What to do with ``remaining`` seconds before the next heartbeat: a long-poll of whole
    seconds ``(seconds, 0)``, or, when less than one second is left, a plain sleep ``(0, seconds)``
    (never a busy wait); ``(0, 0)`` when the heartbeat is due."""
    if remaining >= 1:
        return min(LONG_POLL_SECONDS, int(remaining)), 0.0
    return 0, max(remaining, 0.0)


STOP_WAIT_SECONDS = 3
"""How long a stop or a reload waits for the connection thread (woken by ``abort``) to end."""


class StatusFile:
    """``himds-status.json``: what himds knows of the machine's standing, for ``show``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self.values: dict[str, Any] = {}

    def update(self, **values: Any) -> None:
        with self._lock:
            self.values.update(values)
            self.values["updatedAt"] = utc_text()
            self._path.parent.mkdir(mode=0o755, exist_ok=True)  # the role makes it; older layouts lack it
            write_json_atomic(self._path, self.values, mode=0o644)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.values)

    def get(self, key: str) -> Any:
        with self._lock:
            return self.values.get(key)


class Connection:
    """The worker for one connection state."""

    def __init__(
        self,
        paths: AgentPaths,
        state: ConnectionState,
        status: StatusFile,
        service_statuses: Callable[[], Mapping[str, Any]],
        logger: logging.Logger,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        self.paths = paths
        self.state = state
        self.status = status
        self.service_statuses = service_statuses
        self.logger = logger
        self._unreported = dict(properties or {})
        """The inventory, sent as ``changes`` with the first accepted heartbeat after start."""
        self.stop = threading.Event()
        self.interval = DEFAULT_INTERVAL
        self.generation = -1
        self.service_generations: dict[str, int] | None = None
        """The self-read's last ``serviceGenerations`` (None until one was read)."""
        self.automatic_upgrade = False
        self.offered_version: object = None
        """With automatic upgrades, the version the rollout offered in the last self-read."""
        self._reported_services: Mapping[str, Any] | None = None
        self._reported_upgrade: Mapping[str, Any] = {}
        ca = paths.control_plane_ca if paths.control_plane_ca.exists() else None
        self.client = HttpsClient(
            state.control_plane_url, ca, timeout=30, proxies=proxy_policy(paths), named=state.endpoints
        )
        signer = load_machine_signer(paths.identity_key)
        self.api = MachineApi(self.client, AssertionSigner(signer, state.vm_id, state.assertion_audience))
        self.thread = threading.Thread(target=self._run, name="himds-connection", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.client.abort()
        self.thread.join(timeout=STOP_WAIT_SECONDS)
        if self.thread.is_alive():  # a daemon thread: it ends with the process, or on its own
            self.logger.warning(
                "the connection thread did not end within %d s of being stopped; going on without it",
                STOP_WAIT_SECONDS,
            )
            return  # its client is aborted: it refuses every call and closes itself; not closed under it
        self.client.close()

    # --- the loop ------------------------------------------------------------------------------

    def _wake(self, why: str, services: Sequence[str] = SERVICES) -> None:
        """The services started on demand (extd, gcad) told there may be work (``ondemand.py``)."""
        woken = wake(self.paths, why, services)
        if woken:
            self.logger.debug("woke %s: %s", ", ".join(woken), why)

    def _run(self) -> None:
        failures = 0
        next_heartbeat = 0.0  # at once
        clock = time.monotonic
        # gcad evaluates what it keeps without the control plane (after a reboot too), and both
        # look at what they may have missed while himds was down.
        self._wake("the agent service started")
        while not self.stop.is_set():
            try:
                if clock() >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = clock() + jittered(self.interval, 0.1)
                    if failures:  # back: gcad delivers the reports it made meanwhile, extd its work
                        self._wake("the control plane can be reached again")
                    failures = 0
                poll, sleep = idle_step(next_heartbeat - clock())
                release_free_memory()  # idle from here: what the work before left free goes back
                if poll:
                    self._wait_for_work(poll)
                elif sleep:
                    self.stop.wait(sleep)
                failures = 0
            except CredentialExpired as exc:
                self.logger.error("the machine's credential has expired: %s", exc)
                self.status.update(
                    status="Expired",
                    agentErrorCode="CredentialExpired",
                    agentErrorDetails=f"{exc}. {WAY_OUT}",
                    agentErrorTimestamp=utc_text(),
                )
                return  # nothing more to do until a new connect
            except Cloned as exc:
                self._error("MachineCloned", str(exc))
                next_heartbeat = 0.0
                self.stop.wait(exc.wait)
            except (ControlPlaneUnreachable, AgentApiError, AzcmError) as exc:
                failures += 1
                self._error(exc.__class__.__name__, str(exc))
                next_heartbeat = 0.0  # the first call that gets through is a heartbeat: Connected again
                if self.stop.is_set():
                    return
                self.stop.wait(retry_delay(exc, failures))

    def _error(self, code: str, message: str) -> None:
        """The control plane could not be reached, or did not take the call: Disconnected (as the
        real agent shows it when its heartbeats do not get through), with what happened."""
        if self.stop.is_set():
            return
        self.logger.warning("control plane call failed (%s): %s", code, message)
        self.status.update(
            status="Disconnected",
            agentErrorCode=code,
            agentErrorDetails=message,
            agentErrorTimestamp=utc_text(),
        )

    def _heartbeat(self) -> None:
        body: dict[str, Any] = {"hostId": self.state.host_id, "agentVersion": __version__}
        services = self.service_statuses()
        if services and services != self._reported_services:
            body["serviceStatuses"] = dict(services)
        if self._unreported:
            body["changes"] = self._unreported
        upgrade = last_upgrade_attempt(self.paths.upgrade_status)
        if upgrade and upgrade != self._reported_upgrade:
            body["agentUpgrade"] = upgrade
        answer = self.api.heartbeat(body)
        self._reported_services = services
        self._reported_upgrade = upgrade
        self._unreported = {}
        interval = answer.get("heartbeatIntervalSeconds")
        if isinstance(interval, int) and interval > 0:
            self.interval = interval
        self.status.update(
            vmId=self.state.vm_id,
            status="Connected",
            lastHeartbeat=utc_text(),
            agentErrorCode="",
            agentErrorDetails="",
            agentErrorTimestamp="",
            heartbeatIntervalSeconds=self.interval,
        )
        self.logger.debug("heartbeat accepted (interval %d s)", self.interval)
        generation = answer.get("generation")
        # Work that arrived between two long-polls (or while himds was down) is in this answer's
        # generation: taking the number without reading the machine would lose it until the next.
        learned = isinstance(generation, int) and self._learn(generation)
        if not learned and self.automatic_upgrade:
            self._look_at_offer()
        if answer.get("renewCredential") is True:
            self._renew()

    def _wait_for_work(self, wait: int) -> None:
        self._learn(self.api.wait_for_notification(max(self.generation, 0), wait))

    def _learn(self, generation: int | None) -> bool:
        """A generation other than the one the status reflects: read the machine (§5.6), put what
        it says (agentUpgrade, the resource's tags) in the status, and wake the services the work
        is for. Whether it read the machine."""
        if generation is None or generation == self.generation:
            return False
        machine = self.api.read()
        self.generation = int(machine.get("generation", generation))
        services = generations_of(machine.get("serviceGenerations"))
        woken = with_work(self.service_generations, services)
        self.service_generations = services
        if self._offer_changed(machine) and EXTENSION_SERVICE not in woken:
            woken = (EXTENSION_SERVICE, *woken)
        self.logger.info(
            "new work from the control plane (generation %d, for %s)",
            self.generation,
            ", ".join(woken) or "the agent itself",
        )
        self._wake(f"generation {self.generation}", woken)
        self.status.update(
            generation=self.generation, agentUpgrade=machine.get("agentUpgrade"), **resource_tags(machine)
        )
        return True

    def _offer_changed(self, machine: Mapping[str, Any]) -> bool:
        """Note whether the machine takes automatic upgrades and the version the rollout offers
        it (§5.6); whether that version changed."""
        upgrade = machine.get("agentUpgrade")
        self.automatic_upgrade = isinstance(upgrade, dict) and upgrade.get("enableAutomaticUpgrade") is True
        offered, self.offered_version = self.offered_version, machine.get("offeredAgentVersion")
        return self.offered_version is not None and offered != self.offered_version

    def _look_at_offer(self) -> None:
        """With automatic upgrades, at each heartbeat: the rollout offers a version when the
        machine's batch comes, which is no new work (no generation), and extd, started on demand,
        reads the offer only when it runs; so himds reads the machine and wakes extd for a new one
        (docs/agent-upgrade.md, "Automatic upgrades")."""
        machine = self.api.read()
        if self._offer_changed(machine):
            self.logger.info("the rollout offers agent %s", self.offered_version)
            self._wake(f"the rollout offers agent {self.offered_version}", (EXTENSION_SERVICE,))

    def _renew(self) -> None:
        """A new credential over a new key; the old key stays until the answer arrives, and the
        switch happens under the state lock (a ``disconnect`` may be resetting the identity)."""
        identity = MachineIdentity(self.paths)
        public_pem = generate_key_file(identity.pending_key)
        try:
            signer = load_machine_signer(identity.pending_key)
            answer = self.api.renew_credential(self.state.host_id, public_pem)
        except (RequestRefused, AzcmError):
            identity.discard_pending()
            raise
        credential = answer["credential"]
        not_after = str(credential["notAfter"])
        with state_lock(self.paths, code=ErrorCode.INTERNAL):
            now = load_state(self.paths.agent_config)
            if now is None or now.vm_id != self.state.vm_id:
                identity.discard_pending()  # disconnected meanwhile: nothing to switch
                return
            identity.install_certificate(str(credential["certificate"]))
            identity.install_pending_key()
            identity.record_expiry(not_after)
        self.api.signer.use(signer)
        self.status.update(credentialExpiry=not_after)
        self.logger.info("credential renewed, valid until %s", not_after)


UPGRADE_FIELDS = (
    "lastAttemptDesiredVersion",
    "lastAttemptStatus",
    "lastAttemptMessage",
    "lastAttemptTimestamp",
)


def last_upgrade_attempt(path: Path) -> dict[str, Any]:
    """The last upgrade attempt as ``azcmagent upgrade`` recorded it (``agentUpgrade.lastAttempt*``),
    reported with the next heartbeat when it changed; {} when there is none or it is unreadable."""
    document = read_last_attempt(path)
    return {key: str(document[key])[:1024] for key in UPGRADE_FIELDS if document.get(key)}


def resource_tags(machine: Mapping[str, Any]) -> dict[str, Any]:
    """``{"tags": {...}}`` when the machine self-read carries the resource's tags as names to
    strings; ``{}`` otherwise (what a newer control plane sends is ignored, never trusted blindly)."""
    tags = machine.get("tags")
    if isinstance(tags, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        return {"tags": dict(tags)}
    return {}


def retry_delay(error: Exception, failures: int) -> float:
    """How long to wait after the ``failures``-th failure in a row.

    An unreachable control plane (down, restarting, network) is tried again every few seconds,
    at most ``RECONNECT_MAX``, so that agents are back within seconds of its return; a server
    that answers with ``Retry-After`` (507, 503, 429) is taken at its word; other failures back
    off from 5 s to 5 minutes. All with jitter, so a fleet does not come back in step.
    """
    if isinstance(error, ControlPlaneUnreachable):
        return jittered(min(RECONNECT_MAX, RECONNECT_FIRST * 2 ** min(failures - 1, 10)), 0.2)
    if isinstance(error, AgentApiError) and error.status == 401:
        # A refused assertion: a clock that is off (fixed by NTP any moment) or a machine that
        # was deleted. Asking is cheap; ask every half minute at most.
        return jittered(min(ASSERTION_RETRY_MAX, BACKOFF_FIRST * 2 ** min(failures - 1, 10)), 0.2)
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int):
        return jittered(float(retry_after), 0.2)
    return jittered(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(failures - 1, 10)), 0.2)


_STARTUP_TYPES = {"enabled": "Automatic", "disabled": "Disabled", "masked": "Disabled"}
"""systemd's UnitFileState → ARM ``startupType``; anything else (static, indirect) is Manual."""
_ARM_SERVICES = (("extensionService", "extd.service"), ("guestConfigurationService", "gcad.service"))


def heartbeat_service_statuses() -> dict[str, Any]:
    """ARM ``serviceStatuses`` of the installed extension and guest configuration services."""
    states = service_states([unit for _, unit in _ARM_SERVICES])
    statuses: dict[str, Any] = {}
    for key, unit in _ARM_SERVICES:
        state = states[unit]
        if state.installed:
            statuses[key] = {
                "status": "Running" if state.running else "Stopped",
                "startupType": _STARTUP_TYPES.get(state.enabled, "Manual"),
            }
    return statuses


class HimdsService:
    """Owns the current ``Connection`` (or none) and answers the IPC channel."""

    def __init__(
        self,
        paths: AgentPaths,
        service_statuses: Callable[[], Mapping[str, Any]],
        logger: logging.Logger,
        properties: Mapping[str, Any] | None = None,
        facts: Mapping[str, Any] | None = None,
    ) -> None:
        self.paths = paths
        self.service_statuses = service_statuses
        self.logger = logger
        self.properties = dict(properties or {})
        self.facts = dict(facts or {})
        """What ``show`` reports of the host (cloud provider, manufacturer, model)."""
        self.status = StatusFile(paths.himds_status)
        self.on_reload: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._token_lock = threading.Lock()
        self._token_api: MachineApi | None = None
        self.state: ConnectionState | None = None
        self._served: tuple[ConnectionState, dict[str, str], ConnectionState] | None = None

    def served_state(self) -> ConnectionState | None:
        """The connection state as the local API serves it: with the resource's tags as the control
        plane last said them (they change through the management API after ``connect``). The same
        object until either changes, so that rendered documents are reused."""
        state = self.state
        tags = self.status.get("tags")
        if state is None or not isinstance(tags, dict) or tags == state.tags:
            return state
        served = self._served
        if served is None or served[0] is not state or served[1] != tags:
            served = (state, dict(tags), dataclasses.replace(state, tags=dict(tags)))
            self._served = served
        return served[2]

    def identity_token(self, resource: str) -> Mapping[str, Any]:
        """A managed identity token from the control plane (on its own connection)."""
        with self._token_lock:
            if self._token_api is None:
                state = self.state
                if state is None:
                    raise AzcmError(ErrorCode.HIMDS_STATUS_UNAVAILABLE, "this machine is not connected")
                ca = self.paths.control_plane_ca if self.paths.control_plane_ca.exists() else None
                signer = load_machine_signer(self.paths.identity_key)
                self._token_api = MachineApi(
                    HttpsClient(
                        state.control_plane_url, ca, proxies=proxy_policy(self.paths), named=state.endpoints
                    ),
                    AssertionSigner(signer, state.vm_id, state.assertion_audience),
                )
            return self._token_api.identity_token(resource)

    def _stop(self) -> None:
        """End the worker and the token connection (with ``self._lock`` held)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        with self._token_lock:
            if self._token_api is not None:
                self._token_api.client.close()
                self._token_api = None

    def reload_if_changed(self) -> None:
        """:meth:`reload`, unless the state on disk is the one himds already runs with (the CLI's
        word and the file watch both report the same change)."""
        try:
            on_disk = load_state(self.paths.agent_config)
        except AzcmError:
            on_disk = None
        with self._lock:
            running = self._connection is not None or self.state is None
            if on_disk == self.state and running:
                return
        self.reload()

    def reload(self) -> None:
        with self._lock:
            self._stop()
            self.on_reload()
            try:
                self.state = load_state(self.paths.agent_config)
            except AzcmError as exc:
                self.logger.error("%s", exc)
                self.state = None
            if self.state is None:
                self.logger.info("not connected")
                return
            self.logger.info("connected as %s; starting heartbeats", self.state.resource_id)
            self.status.values = {"vmId": self.state.vm_id, **self.facts}
            renewed = MachineIdentity(self.paths).recorded_expiry()
            if renewed:
                self.status.values["credentialExpiry"] = renewed
            try:
                self._connection = Connection(
                    self.paths, self.state, self.status, self.service_statuses, self.logger, self.properties
                )
            except AzcmError as exc:
                self.logger.error("cannot start: %s", exc)
                self.status.update(
                    status="Disconnected", agentErrorCode=exc.error_id, agentErrorDetails=exc.message
                )
                return
            self._connection.start()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def handle_ipc(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        op = request.get("op")
        if op == "reload":
            self.reload_if_changed()
            return {"ok": True, "connected": self.state is not None}
        if op == "status":
            return {"ok": True, "connected": self.state is not None, **self.status.snapshot()}
        return {"error": f"unknown op {op!r}; known: reload, status"}
