"""A small agent for the tests: its own key pair, assertions signed with it, the agent API calls.

It speaks the protocol as docs/agent-protocol.md writes it, independently of the server code.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_key(kind: str = "ec") -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class AgentClient:
    def __init__(
        self, http: httpx.Client, public_url: str, *, key_kind: str = "ec", host_id: str = ""
    ) -> None:
        self.http = http
        self.audience = public_url + "/agent"
        self.key = new_key(key_kind)
        self.host_id = host_id or f"host-{uuid.uuid4().hex}"
        self.vm_id = ""
        self.generation = 0

    @property
    def public_key(self) -> str:
        return public_pem(self.key)

    def assertion(
        self,
        *,
        key: PrivateKey | None = None,
        audience: str | None = None,
        issued_at: float | None = None,
        lifetime: float = 300,
        vm_id: str | None = None,
        claims: dict[str, Any] | None = None,
        algorithm: str | None = None,
    ) -> str:
        signer = key or self.key
        subject = vm_id if vm_id is not None else self.vm_id
        issued = time.time() if issued_at is None else issued_at
        body = {
            "iss": subject,
            "sub": subject,
            "aud": audience or self.audience,
            "iat": int(issued),
            "exp": int(issued + lifetime),
            "jti": uuid.uuid4().hex,
            **(claims or {}),
        }
        alg = algorithm or ("RS256" if isinstance(signer, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(body, signer, algorithm=alg, headers={"kid": subject})

    def headers(self, **assertion: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.assertion(**assertion)}"}

    # --- calls ---------------------------------------------------------------------------------

    def registration(
        self, *, subscription_id: str, tenant_id: str, resource_group: str, name: str, **extra: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "subscriptionId": subscription_id,
            "resourceGroup": resource_group,
            "resourceName": name,
            "location": "westeurope",
            "tenantId": tenant_id,
            "tags": {"env": "test"},
            "cloud": "AzureCloud",
            "correlationId": str(uuid.uuid4()),
            "publicKey": self.public_key,
            "hostId": self.host_id,
            "agentVersion": "1.50.0",
            "properties": {
                "osName": "linux",
                "osType": "linux",
                "osVersion": "6.1.0",
                "machineFqdn": f"{name}.example.test",
                "detectedProperties": {"manufacturer": "QEMU"},
                "hardwareProfile": {
                    "numberOfCpuSockets": 1,
                    "processors": [{"name": "cpu", "numberOfCores": 2}],
                },
            },
        }
        body.update(extra)
        return body

    def register(self, token: str, body: dict[str, Any]) -> httpx.Response:
        reply = self.http.post("/agent/v1/register", json=body, headers={"Authorization": f"Bearer {token}"})
        if reply.status_code in (200, 201):
            self.vm_id = reply.json()["vmId"]
            self.generation = reply.json()["generation"]
        return reply

    def heartbeat(self, headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
        body = {"hostId": self.host_id, "agentVersion": "1.50.0", "errorDetails": [], **fields}
        return self.http.post(
            f"/agent/v1/machines/{self.vm_id}/heartbeat", json=body, headers=headers or self.headers()
        )

    def renew(self, public_key: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"hostId": self.host_id}
        if public_key is not None:
            body["publicKey"] = public_key
        return self.http.post(
            f"/agent/v1/machines/{self.vm_id}/credential", json=body, headers=headers or self.headers()
        )

    def notifications(self, generation: int, wait: int, timeout: float = 30) -> httpx.Response:
        return self.http.get(
            f"/agent/v1/machines/{self.vm_id}/notifications",
            params={"generation": generation, "wait": wait},
            headers=self.headers(),
            timeout=timeout,
        )

    def identity_token(self, resource: str) -> httpx.Response:
        return self.http.post(
            f"/agent/v1/machines/{self.vm_id}/identity/token",
            json={"resource": resource},
            headers=self.headers(),
        )

    def read(self) -> httpx.Response:
        return self.http.get(f"/agent/v1/machines/{self.vm_id}", headers=self.headers())


class ExtensionCertificate:
    """An agent's extension certificate (self-signed RSA 2048, as extd makes it): what the control
    plane encrypts protected settings and parameters to."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "extension certificate")])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(self.key, hashes.SHA256())
        )
        self.thumbprint = self.certificate.fingerprint(hashes.SHA1()).hex().upper()

    def register(self, http: httpx.Client, agent: AgentClient) -> httpx.Response:
        pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode()
        return http.put(
            f"/agent/v1/machines/{agent.vm_id}/extensionCertificate",
            json={"certificate": pem},
            headers=agent.headers(),
        )

    def decrypt(self, envelope: str) -> dict[str, Any]:
        clear = pkcs7.pkcs7_decrypt_der(base64.b64decode(envelope), self.certificate, self.key, [])
        document: dict[str, Any] = json.loads(clear)
        return document
