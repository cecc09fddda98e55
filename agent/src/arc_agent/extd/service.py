"""The extension service's loop (docs/extensions.md): register the extension certificate, keep the
package-signing key, then, again and again: read the goal state, decide (``plan.py``) under the
local policy, run the steps (``executor.py``), and wait on the long-poll for new work.

Started on demand (``ondemand.py``: himds's wake file, ``--on-demand``), it ends once nothing
needs it for ``linger`` seconds: no handler works in the background or reports heartbeats, and
no new work came; a control plane it cannot reach ends it too (himds wakes it when the control
plane is back)."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from arc_agent import __version__
from arc_agent.config.connection import load_state
from arc_agent.config.settings import EXTENSIONS_ALLOWLIST, EXTENSIONS_BLOCKLIST, LocalConfig
from arc_agent.config.upgrade_status import read_last_attempt
from arc_agent.cpclient.agentapi import AgentApiError, CredentialExpired, MachineApi
from arc_agent.cpclient.machine import open_machine_api, package_signing_keys
from arc_agent.cpclient.outbound import proxy_policy
from arc_agent.cpclient.proxy import extension_environment
from arc_agent.cpclient.transport import ControlPlaneUnreachable, HttpsClient
from arc_agent.errors import AzcmError
from arc_agent.extd import agent_upgrade, certificate
from arc_agent.extd.executor import Executor
from arc_agent.extd.handler import Handler
from arc_agent.extd.plan import Goal, Policy, plan
from arc_agent.extd.records import Records
from arc_agent.fsutil import write_json_atomic
from arc_agent.ondemand import woken
from arc_agent.paths import AgentPaths

WAIT_SECONDS = 60
FOLLOW_SECONDS = 2
NOT_CONNECTED_POLL_SECONDS = 5
"""How often a machine that is not connected looks at its connection state (a file read)."""
RETRY_SECONDS = (2, 5, 15, 30, 60)
KEYS_FILE = "package-signing.json"
REGISTERED_FILE = "certificate-registered.json"
"""Which machine (vmId) the extension certificate (thumbprint) was registered for: once each."""
LINGER_SECONDS = 20
"""Started on demand, how long extd waits for more work before it ends."""


def policy_of(config: LocalConfig) -> Policy:
    allow = config.get(EXTENSIONS_ALLOWLIST)
    block = config.get(EXTENSIONS_BLOCKLIST)
    return Policy(
        enabled=bool(config.get("extensions.enabled")),
        allowlist=tuple(allow) if isinstance(allow, list) else (),
        blocklist=tuple(block) if isinstance(block, list) else (),
    )


def installed_handlers(paths: AgentPaths) -> list[Handler]:
    """The handlers of the extensions installed on the machine (their records)."""
    return [
        Handler(
            record.publisher,
            record.type,
            record.version,
            lib_dir=paths.waagent_dir,
            log_root=paths.extension_logs_dir,
        )
        for record in Records(paths.extension_state_dir / "records").load().values()
        if record.version
    ]


class ExtensionService:
    """One machine's extension service; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        paths: AgentPaths,
        logger: logging.Logger,
        wrapper: Callable[[Handler], Sequence[str]] = lambda handler: (),
        *,
        on_demand: bool = False,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self.paths = paths
        self.logger = logger
        self.wrapper = wrapper
        self.on_demand = on_demand
        self.linger = linger
        self.watching = False
        """Whether a handler needs extd while nothing else does: one works in the background, or
        reports heartbeats (started on demand, extd stays while one does)."""
        self.stop = threading.Event()
        self.generation = -1
        self.following = False
        """Whether a handler works on in the background (its status file is followed)."""
        self._client: HttpsClient | None = None
        self.upgrade_started: agent_upgrade.Request | None = None
        """The upgrade this process started (it is not started twice)."""
        self.failures = 0
        """Rounds that failed in a row (the retry delays follow it)."""
        self.registered = threading.Event()
        """Set once the control plane has the extension certificate (it can encrypt to it)."""

    def _connection_key(self) -> tuple[str, str] | None:
        state = load_state(self.paths.agent_config)
        return None if state is None else (state.vm_id, state.control_plane_url)

    def _api(self) -> tuple[HttpsClient, MachineApi] | None:
        return open_machine_api(self.paths)

    def signing_keys(self, api: MachineApi) -> dict[str, Any]:
        """The package-signing key, fetched once (over the control plane's pinned TLS) and kept."""
        return package_signing_keys(api, self.paths.extension_state_dir / KEYS_FILE)

    def _executor(self, api: MachineApi) -> Executor:
        return Executor(
            api,
            Records(self.paths.extension_state_dir / "records"),
            self.signing_keys(api),
            lib_dir=self.paths.waagent_dir,
            log_root=self.paths.extension_logs_dir,
            wrapper=self.wrapper,
            logger=self.logger,
            environment=extension_environment(proxy_policy(self.paths), os.environ),
        )

    def converge(self, api: MachineApi) -> int:
        """One round: the goal state brought about; its generation."""
        document = api.extension_goal_state()
        goals = [Goal.from_wire(entry) for entry in document.get("extensions", [])]
        executor = self._executor(api)
        records = executor.records
        installed = records.load()
        policy = policy_of(LocalConfig.load(self.paths.local_config))
        by_name = {goal.name.lower(): goal for goal in goals}
        for name, steps in plan(goals, installed, policy).items():
            self.logger.info("%s: %s", name, ", ".join(step.verb for step in steps))
            executor.apply(by_name.get(name), installed.get(name), steps)
        self.look(executor)
        self.upgrade_if_asked(api)
        return int(document.get("generation", 0))

    def upgrade_if_asked(self, api: MachineApi) -> None:
        """Start the upgrade the machine's ``agentUpgrade.desiredVersion``, or the automatic
        rollout, asks for, once."""
        machine = api.read()
        request = agent_upgrade.wanted(
            machine.get("agentUpgrade"),
            __version__,
            read_last_attempt(self.paths.upgrade_status),
            machine.get("offeredAgentVersion"),
        )
        if request is None or request == self.upgrade_started:
            return
        self.upgrade_started = request
        desired = (machine.get("agentUpgrade") or {}).get("desiredVersion")
        why = "asks for" if desired else "offers (automatic upgrade)"
        self.logger.info("the control plane %s agent %s: upgrading", why, request.version)
        try:
            done = agent_upgrade.start(self.paths.install_dir / "bin" / "azcmagent", request)
        except subprocess.SubprocessError as exc:  # its time limit; the extension loop goes on
            self.logger.error("the upgrade to %s did not start: %s", request.version, exc)
            return
        if done.returncode != 0:
            self.logger.error("the upgrade to %s failed: %s", request.version, done.stderr.strip()[-1000:])

    def look(self, executor: Executor) -> None:
        """What handlers say on their own: the status files of those working in the background,
        and heartbeats."""
        now = time.time()
        following = watching = False
        for record in executor.records.load().values():
            record = executor.follow(record)
            record = executor.heartbeat(record, now)
            beating = record.handler_state == "Enabled" and bool(record.heartbeat)
            following = following or record.following
            watching = watching or record.following or beating
        self.following = following
        self.watching = watching

    def register_certificate(self, api: MachineApi, vm_id: str) -> None:
        """The extension certificate registered with the control plane, once per machine."""
        thumbprint, pem = certificate.load_or_create(self.paths.waagent_dir)
        record = self.paths.extension_state_dir / REGISTERED_FILE
        try:
            registered = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            registered = {}
        if registered != {"vmId": vm_id, "thumbprint": thumbprint}:
            api.register_extension_certificate(pem)
            record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_json_atomic(record, {"vmId": vm_id, "thumbprint": thumbprint}, mode=0o600)
            self.logger.info("extension certificate %s registered", thumbprint)
        self.registered.set()

    def _woken(self) -> bool:
        """Started on demand: its wake file taken (a wake that came meanwhile means new work)."""
        return self.on_demand and woken(self.paths, "extd", self.logger)

    def run(self) -> None:
        self._woken()
        while not self.stop.is_set():
            connection = None
            try:
                key = self._connection_key()
                connection = self._api() if key is not None else None
                if connection is None or key is None:
                    if self.on_demand:
                        self.logger.info("not connected: nothing to do")
                        return
                    self.logger.debug("not connected; looking again in %d s", NOT_CONNECTED_POLL_SECONDS)
                    self.stop.wait(NOT_CONNECTED_POLL_SECONDS)
                    continue
                client, api = connection
                self._client = client
                if self.stop.is_set():
                    break
                self.register_certificate(api, key[0])
                if self.serve(api, key):
                    return
            except CredentialExpired as exc:
                self.logger.error("the machine's credential has expired; waiting for a reconnect: %s", exc)
                if self.on_demand:
                    return
                self.stop.wait(RETRY_SECONDS[-1])
            except ControlPlaneUnreachable as exc:
                if self.on_demand:  # himds wakes extd when the control plane is back
                    self.logger.warning("%s; ending until the control plane can be reached", exc)
                    return
                self._retry(exc)
            except (AgentApiError, AzcmError, OSError) as exc:
                if self.on_demand and self.failures >= len(RETRY_SECONDS):
                    self.logger.error("%s; ending (the next wake tries again)", exc)
                    return
                self._retry(exc)
            finally:
                if connection is not None:
                    connection[0].close()

    def _retry(self, exc: Exception) -> None:
        delay = RETRY_SECONDS[min(self.failures, len(RETRY_SECONDS) - 1)]
        self.failures += 1
        self.logger.warning("%s; trying again in %d s", exc, delay)
        self.stop.wait(delay)

    def serve(self, api: MachineApi, key: tuple[str, str]) -> bool:
        """Rounds until the machine is disconnected or connected elsewhere (the state file says
        so); started on demand, until nothing needs extd any more: True then (extd ends)."""
        due, last = True, 0.0
        while not self.stop.is_set() and self._connection_key() == key:
            if due:
                self.generation = self.converge(api)
                self.failures, last = 0, time.monotonic()
            idle = time.monotonic() - last
            if self.on_demand and not self.watching and idle >= self.linger:
                if not self._woken():
                    self.logger.info("nothing to do: ending until woken")
                    return True
                due = True
                continue
            # While a handler works in the background, its status file is looked at every
            # FOLLOW_SECONDS (a file read); the goal state when notified, and at least every
            # WAIT_SECONDS (started on demand: until the linger ends).
            wait = FOLLOW_SECONDS if self.following else WAIT_SECONDS
            if self.on_demand and not self.watching:
                wait = max(1, min(wait, math.ceil(self.linger - idle)))
            notified = api.wait_for_notification(self.generation, wait) is not None
            if notified:
                self._woken()  # the wake himds wrote for this work is this round's
            due = notified or time.monotonic() - last >= WAIT_SECONDS - 1
            if not due:
                self.look(self._executor(api))
        return False

    def close(self) -> None:
        """Stop: a long-poll in progress ends at once."""
        self.stop.set()
        client = self._client
        if client is not None:
            client.abort()
