"""The lab's control plane as the tests talk to it: tokens, machines, principals."""

from __future__ import annotations

import ctypes
import http.client
import json
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from arc_lab.environment import LabEnv

ADMIN_ROLE = "Azure Connected Machine Resource Administrator"
ONBOARDING_ROLE = "Azure Connected Machine Onboarding"
API = "2026-09-01"


class ControlPlane:
    def __init__(
        self, env: LabEnv, init: dict[str, Any], onboarding: dict[str, Any], admin: dict[str, Any]
    ) -> None:
        self.env = env
        self.init = init
        self.onboarding = onboarding
        self.admin = admin
        self.context = ssl.create_default_context(cafile=str(env.ca_file))
        self._admin_token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()

    def token(self, client_id: str, secret: str) -> str:
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": "https://management.azure.com/.default",
            }
        ).encode()
        url = f"{self.env.url}/{self.init['tenantId']}/oauth2/v2.0/token"
        with self.open(urllib.request.Request(url, data=form)) as reply:
            return str(json.load(reply)["access_token"])

    def machine_path(self, name: str) -> str:
        return (
            f"/subscriptions/{self.init['subscriptionId']}/resourceGroups/{self.init['resourceGroup']}"
            f"/providers/Microsoft.HybridCompute/machines/{name}?api-version={API}"
        )

    def machine(self, name: str) -> dict[str, Any] | None:
        token = self.token(self.admin["clientId"], self.admin["clientSecret"])
        request = urllib.request.Request(
            self.env.url + self.machine_path(name), headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with self.open(request) as reply:
                document: dict[str, Any] = json.load(reply)
                return document
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def patch_machine(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Machines_Update as an administrator (e.g. ``{"tags": {...}}``); the machine after it."""
        token = self.token(self.admin["clientId"], self.admin["clientSecret"])
        request = urllib.request.Request(
            self.env.url + self.machine_path(name),
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with self.open(request) as reply:
            document: dict[str, Any] = json.load(reply)
            return document

    def admin_token(self) -> str:
        """The administrator's token, kept for 30 minutes (it is valid for an hour): the token
        service throttles a client that signs in again and again."""
        with self._token_lock:
            if self._admin_token is None or time.monotonic() > self._admin_token[1]:
                token = self.token(self.admin["clientId"], self.admin["clientSecret"])
                self._admin_token = (token, time.monotonic() + 1800)
            return self._admin_token[0]

    @property
    def group_path(self) -> str:
        """The machines' resource group, as a path."""
        return f"/subscriptions/{self.init['subscriptionId']}/resourceGroups/{self.init['resourceGroup']}"

    def arm(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """One management API call as an administrator (``path`` under the machine's resource
        group, with its query): the status and the JSON answer (None when empty); errors too."""
        token = self.admin_token()
        request = urllib.request.Request(
            self.env.url + self.group_path + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with self.open(request) as reply:
                raw = reply.read()
                return reply.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def session(self) -> ArmSession:
        """Management API calls as an administrator over one kept-alive connection, as Azure's
        SDKs make them (``arm`` opens a connection, and a TLS handshake, per call)."""
        return ArmSession(self)

    def extension_path(self, machine: str, name: str) -> str:
        return f"/providers/Microsoft.HybridCompute/machines/{machine}/extensions/{name}?api-version={API}"

    def settled_extension(self, machine: str, name: str, seconds: float = 60) -> dict[str, Any] | None:
        """The extension once its provisioning state is Succeeded or Failed (None once deleted)."""
        deadline = time.monotonic() + seconds
        while True:
            status, document = self.arm("GET", self.extension_path(machine, name))
            if status == 404:
                return None
            state = document["properties"].get("provisioningState")
            if state in ("Succeeded", "Failed"):
                found: dict[str, Any] = document
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{machine}/{name} still {state} after {seconds} s")
            time.sleep(0.5)

    def status(self, name: str) -> str:
        machine = self.machine(name)
        return "" if machine is None else str(machine["properties"]["status"])

    def certificate_principal(self, name: str) -> tuple[str, str]:
        """A new Onboarding principal that signs in with a certificate: (PEM of certificate and
        key, client id). The pair is made by openssl (a self-signed RSA certificate for 7 days)."""
        with tempfile.TemporaryDirectory() as scratch:
            key, cert = f"{scratch}/key.pem", f"{scratch}/cert.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-days", "7", "-keyout", key, "-out", cert],
                check=True, capture_output=True,
            )  # fmt: skip
            created = self.env.controlplane_cli(
                "sp", "create", "--name", name, "--role", ONBOARDING_ROLE, "--certificate", cert,
                "--scope", f"/subscriptions/{self.init['subscriptionId']}",
            )  # fmt: skip
            with open(cert) as cert_pem, open(key) as key_pem:
                return cert_pem.read() + key_pem.read(), str(created["clientId"])

    def open(self, request: urllib.request.Request, timeout: float = 30) -> Any:
        """urllib's ``urlopen`` from the lab's controller namespace, where the control plane is."""
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.context))
        return in_namespace(self.env.ctl_ns, lambda: opener.open(request, timeout=timeout))


class ArmSession:
    """``ControlPlane.arm`` over one HTTPS connection, opened from the controller's namespace (a
    socket stays in the namespace it was made in) and opened again if the server closed it."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        url = urllib.parse.urlsplit(plane.env.url)
        self.connection = http.client.HTTPSConnection(
            str(url.hostname), url.port or 443, context=plane.context, timeout=30
        )

    def arm(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.plane.admin_token()}", "Content-Type": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            if self.connection.sock is None:
                in_namespace(self.plane.env.ctl_ns, self.connection.connect)
            try:
                self.connection.request(method, self.plane.group_path + path, body=data, headers=headers)
                reply = self.connection.getresponse()
                raw = reply.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.connection.close()
                if attempt == 2:
                    raise
                continue
            if reply.will_close:
                self.connection.close()
            return reply.status, json.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def in_namespace(namespace: str, call: Callable[[], Any]) -> Any:
    """Run ``call`` with this thread in the network namespace ``namespace`` (setns), then come back."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet = 0x40000000
    with open("/proc/self/ns/net") as home, open(f"/run/netns/{namespace}") as target:
        if libc.setns(target.fileno(), clone_newnet) != 0:
            raise OSError(ctypes.get_errno(), f"setns {namespace}")
        try:
            return call()
        finally:
            libc.setns(home.fileno(), clone_newnet)
