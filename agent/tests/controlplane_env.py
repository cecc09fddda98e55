"""A real control plane for the agent's tests: ``arc-controlplane init`` and ``serve`` over HTTPS.

The agent's tests talk to it as a real agent would; nothing of it is mocked. The control plane
package is installed in the development environment (``make venv``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certificates import certificate_pem, key_pem, self_signed

ARM_API_VERSION = "2026-09-01"


def _cli() -> list[str]:
    script = shutil.which("arc-controlplane", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "arc_controlplane"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Principal:
    client_id: str
    client_secret: str = ""
    certificate_file: Path | None = None


@dataclass
class ControlPlane:
    data_dir: Path
    url: str
    ca_file: Path
    tenant_id: str
    subscription_id: str
    resource_group: str
    location: str
    onboarding: Principal
    process: subprocess.Popen[bytes]
    extra_args: list[str] = field(default_factory=list)
    _tokens: dict[str, str] = field(default_factory=dict)

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def principal(self, name: str, role: str, *, certificate: bool = False) -> Principal:
        args = ["sp", "create", "--data-dir", str(self.data_dir), "--name", name, "--role", role]
        args += ["--scope", f"/subscriptions/{self.subscription_id}", "--json"]
        cert_file = None
        if certificate:
            cert_file = self.data_dir.parent / f"{name}.pem"
            _write_certificate(cert_file, name)
            args += ["--certificate", str(cert_file)]
        created = json.loads(
            subprocess.run([*_cli(), *args], check=True, capture_output=True, text=True).stdout
        )
        return Principal(created["clientId"], created.get("clientSecret", ""), cert_file)

    def token(self, principal: Principal) -> str:
        if principal.client_id not in self._tokens:
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": principal.client_id,
                    "client_secret": principal.client_secret,
                    "scope": "https://management.azure.com/.default",
                }
            ).encode()
            url = f"{self.url}/{self.tenant_id}/oauth2/v2.0/token"
            with urllib.request.urlopen(url, data=form, context=self.context(), timeout=30) as reply:
                self._tokens[principal.client_id] = json.load(reply)["access_token"]
        return self._tokens[principal.client_id]

    def machine(self, name: str, reader: Principal) -> dict[str, Any] | None:
        """The ARM machine resource (None when there is none)."""
        path = (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.HybridCompute/machines/{name}?api-version={ARM_API_VERSION}"
        )
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token(reader)}"}
        )
        try:
            with urllib.request.urlopen(request, context=self.context(), timeout=30) as reply:
                document: dict[str, Any] = json.load(reply)
                return document
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def patch_machine(self, name: str, body: dict[str, Any], admin: Principal) -> dict[str, Any]:
        path = (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.HybridCompute/machines/{name}?api-version={ARM_API_VERSION}"
        )
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={"Authorization": f"Bearer {self.token(admin)}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=self.context(), timeout=30) as reply:
            document: dict[str, Any] = json.load(reply)
            return document

    def manage(
        self,
        method: str,
        path: str,
        principal: Principal,
        body: dict[str, Any] | None = None,
        api_version: str = ARM_API_VERSION,
    ) -> tuple[int, Any]:
        """A management API call below the resource group (``path`` after it); status and body."""
        url = (
            f"{self.url}/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.HybridCompute/{path}?api-version={api_version}"
        )
        headers = {"Authorization": f"Bearer {self.token(principal)}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, context=self.context(), timeout=30) as reply:
                raw = reply.read()
                return reply.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``arc-controlplane`` on this control plane's data directory."""
        return subprocess.run(
            [*_cli(), *args, "--data-dir", str(self.data_dir)], capture_output=True, text=True, check=False
        )

    def set_credential_expiry(self, name: str, not_after: dt.datetime) -> None:
        """Move a machine's credential expiry in the database (time travel for renewal tests)."""
        from arc_controlplane.db.engine import Database
        from arc_controlplane.db.tables import Machine
        from sqlalchemy import update

        db = Database.open(f"sqlite:///{self.data_dir / 'controlplane.db'}")
        try:
            with db.session() as session:
                session.execute(
                    update(Machine).where(Machine.name == name).values(credential_not_after=not_after)
                )
        finally:
            db.dispose()

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind."""
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """Serve again on the same port and data (after ``kill``)."""
        port = urllib.parse.urlsplit(self.url).port
        log = (self.data_dir.parent / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [*_cli(), "serve", "--data-dir", str(self.data_dir), "--port", str(port), *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_until_serving(self)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _write_certificate(path: Path, name: str) -> None:
    certificate, key = self_signed(name)
    pem = certificate_pem(certificate) + key_pem(key)
    path.write_bytes(pem)
    path.chmod(0o600)


def start_control_plane(base: Path, extra_args: list[str] | None = None) -> ControlPlane:
    data = base / "data"
    port = _free_port()
    init = json.loads(
        subprocess.run(
            [*_cli(), "init", "--data-dir", str(data), "--port", str(port), "--json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    log = (base / "serve.log").open("wb")
    process = subprocess.Popen(
        [*_cli(), "serve", "--data-dir", str(data), "--port", str(port), *(extra_args or [])],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    plane = ControlPlane(
        data_dir=data,
        url=init["url"],
        ca_file=Path(init["caCertificate"]),
        tenant_id=init["tenantId"],
        subscription_id=init["subscriptionId"],
        resource_group=init["resourceGroup"],
        location=init["location"],
        onboarding=Principal(init["clientId"], init["clientSecret"]),
        process=process,
        extra_args=list(extra_args or []),
    )
    _wait_until_serving(plane)
    return plane


def _wait_until_serving(plane: ControlPlane) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{plane.url}/healthz", context=plane.context(), timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline or plane.process.poll() is not None:
                plane.stop()
                raise AssertionError((plane.data_dir.parent / "serve.log").read_text()) from None
            time.sleep(0.1)
