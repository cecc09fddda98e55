"""The calls a connected machine makes with its own key (docs/agent-protocol.md §5.2-5.6).

Each call signs (or reuses) a machine assertion; a 401 ``InvalidAssertion`` is retried once
with a freshly signed one. Outcomes the caller must act on are exceptions with what to do:
``CredentialExpired`` (stop; the user reconnects), ``MachineUnknown`` (deleted: Disconnected),
``Cloned`` (429: wait ``retry_after``), ``ServerTrouble`` (5xx: back off). Network failures are
``ControlPlaneUnreachable`` from the transport.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from arc_agent.cpclient.endpoints import on_control_plane
from arc_agent.cpclient.transport import MAX_RESPONSE_BYTES, HttpsClient, Reply
from arc_agent.identity.jws import AssertionSigner

API_BASE = "/agent/v1"


class AgentApiError(Exception):
    def __init__(self, reply: Reply) -> None:
        code, message = reply.error_code(), reply.error_message()
        super().__init__(
            f"HTTP {reply.status} {code}: {message}" if code else f"HTTP {reply.status}: {message}"
        )
        self.status = reply.status
        self.code = code
        self.retry_after = _seconds(reply.headers.get("retry-after", ""))
        """The server's ``Retry-After`` in seconds (1 to 3600), None when it gave none."""


def _seconds(value: str) -> int | None:
    try:
        seconds = int(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 1), 3600)


class CredentialExpired(AgentApiError):
    """The credential lapsed: only ``disconnect --force-local-only`` and ``connect`` heal."""


class MachineUnknown(AgentApiError):
    """The control plane has no such machine any more (deleted), or refuses this key."""


class Cloned(AgentApiError):
    """Another host is connected as this machine (429)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply)
        self.wait = self.retry_after or 300


class ServerTrouble(AgentApiError):
    """5xx or an answer that makes no sense: back off and retry."""


class RequestRefused(AgentApiError):
    """4xx for what the agent sent (a bug or a bad local request): do not retry unchanged."""


class ForeignLocation(ValueError):
    """The goal state named a download elsewhere than the control plane: not fetched."""


class MachineApi:
    """One machine's calls over one connection (not thread-safe: one per thread)."""

    def __init__(self, client: HttpsClient, signer: AssertionSigner) -> None:
        self.client = client
        self.signer = signer
        self._base = f"{API_BASE}/machines/{signer.vm_id}"

    def heartbeat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/heartbeat", body)

    def renew_credential(self, host_id: str, public_key: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"hostId": host_id}
        if public_key is not None:
            body["publicKey"] = public_key
        return self._call("POST", "/credential", body)

    def wait_for_notification(self, generation: int, wait: int) -> int | None:
        """The new generation, or None when nothing changed within ``wait`` seconds."""
        reply = self._send("GET", f"/notifications?generation={generation}&wait={wait}", None, wait + 30)
        if reply.status == 204:
            return None
        document = self._document(reply)
        generation_now = document.get("generation")
        if not isinstance(generation_now, int):
            raise ServerTrouble(reply)
        return generation_now

    def read(self) -> dict[str, Any]:
        return self._call("GET", "", None)

    def identity_token(self, resource: str) -> dict[str, Any]:
        return self._call("POST", "/identity/token", {"resource": resource})

    # --- extensions (docs/agent-protocol.md, 5.8) ----------------------------------------------

    def extension_goal_state(self) -> dict[str, Any]:
        return self._call("GET", "/extensions", None)

    def report_extension(self, name: str, report: Mapping[str, Any]) -> None:
        self._call("PUT", f"/extensions/{urllib.parse.quote(name, safe='')}/status", report)

    def register_extension_certificate(self, pem: str) -> str:
        """The certificate's thumbprint, as the control plane computed it."""
        return str(self._call("PUT", "/extensionCertificate", {"certificate": pem}).get("thumbprint", ""))

    def package_signing_keys(self) -> dict[str, Any]:
        return self._document(self._send("GET", "/packageSigningKey", None, None, base=API_BASE))

    # --- machine configuration (docs/agent-protocol.md, 5.10) ----------------------------------

    def guest_configuration_assignments(self) -> dict[str, Any]:
        """The machine's assignments and its generation."""
        return self._call("GET", "/guestConfigurationAssignments", None)

    def report_guest_configuration(self, name: str, report: Mapping[str, Any]) -> dict[str, Any]:
        """Send one evaluation; NotFound (a RequestRefused) when the assignment is gone."""
        return self._call(
            "POST", f"/guestConfigurationAssignments/{urllib.parse.quote(name, safe='')}/reports", report
        )

    # --- agent packages (docs/agent-protocol.md, 5.9) ------------------------------------------

    def agent_packages(self, target: str) -> list[dict[str, Any]]:
        """The published agent versions for ``target`` (e.g. ``cp311-x86_64``), oldest first."""
        query = urllib.parse.urlencode({"target": target})
        reply = self._send("GET", f"/agentPackages?{query}", None, None, base=API_BASE)
        packages = self._document(reply).get("packages")
        return [p for p in packages if isinstance(p, dict)] if isinstance(packages, list) else []

    def fetch(self, uri: str, limit: int) -> bytes:
        """A package or signature the goal state names (on this control plane only), at most
        ``limit`` bytes."""
        path = on_control_plane(uri, self.client.endpoints)
        if path is None:
            message = f"{uri} is not on {self.client.base_url} or the names it gave for its services"
            raise RequestRefused(Reply(400, {}, b"", {"error": {"code": "ForeignUri", "message": message}}))
        reply = self._send("GET", path, None, None, base="", limit=limit)
        if reply.status != 200:
            self._document(reply)  # raises what the status means
            raise ServerTrouble(reply)
        return reply.body

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        return self._document(self._send(method, path, body, None))

    def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        timeout: float | None,
        *,
        base: str | None = None,
        limit: int = MAX_RESPONSE_BYTES,
    ) -> Reply:
        prefix = self._base if base is None else base
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.signer.assertion()}"}
            if body is None:
                reply = self.client.request(method, prefix + path, None, headers, timeout, limit=limit)
            else:
                reply = self.client.json(method, prefix + path, body, headers, timeout)
            if reply.status == 401 and reply.error_code() == "InvalidAssertion" and attempt == 1:
                self.signer.refresh()
                continue
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _document(reply: Reply) -> dict[str, Any]:
        if 200 <= reply.status < 300 and isinstance(reply.document, dict):
            return reply.document
        if reply.status == 204:
            return {}
        code = reply.error_code()
        if reply.status == 401 and code == "CredentialExpired":
            raise CredentialExpired(reply)
        if reply.status == 401:
            raise MachineUnknown(reply)
        if reply.status == 429:
            raise Cloned(reply)
        if 400 <= reply.status < 500:
            raise RequestRefused(reply)
        raise ServerTrouble(reply)
