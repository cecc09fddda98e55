"""The token service, OIDC discovery and JWKS, against a running server over HTTPS, on SQLite
and PostgreSQL; azure-identity and MSAL unmodified among the clients."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import msal  # type: ignore[import-untyped]
import pytest
import requests
from azure.identity import CertificateCredential, ClientSecretCredential
from conftest import Server, ca_context, run_cli, start_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import Principal

ARM_SCOPE = "https://management.azure.com/.default"
ARM_AUDIENCE = "https://management.azure.com/"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def self_signed(name: str, days: int = 30) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def pem_of(key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> bytes:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private + certificate.public_bytes(serialization.Encoding.PEM)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Plane:
    """A running control plane with an onboarding principal (secret) and one with a certificate."""

    server: Server
    data_dir: Path
    database_url: str
    tenant_id: str
    client_id: str
    client_secret: str
    object_id: str
    cert_client_id: str
    cert_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    http: httpx.Client
    sent: int = 0

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    def token_url(self, tenant: str | None = None, *, v1: bool = False) -> str:
        path = "oauth2/token" if v1 else "oauth2/v2.0/token"
        return f"{self.base}/{tenant or self.tenant_id}/{path}"

    def post_token(
        self, form: dict[str, str], tenant: str | None = None, *, v1: bool = False
    ) -> httpx.Response:
        """Each from a loopback address of its own: these tests fail sign-ins on purpose, more
        than one address may (``test_signin_throttling.py`` tests that limit)."""
        self.sent += 1
        source = f"127.1.{self.sent // 250 % 250}.{self.sent % 250 + 1}"
        transport = httpx.HTTPTransport(local_address=source, verify=ca_context(self.server.ca_file))
        with httpx.Client(transport=transport, timeout=10) as client:
            return client.post(self.token_url(tenant, v1=v1), data=form)

    def v1_form(self, **changes: str) -> dict[str, str]:
        """A v1 request (``resource=``, as ADAL sends it) with the client secret."""
        return self.secret_form(**{"scope": "-", "resource": ARM_AUDIENCE.rstrip("/"), **changes})

    def secret_form(self, **changes: str) -> dict[str, str]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": ARM_SCOPE,
        }
        form.update(changes)
        return {name: value for name, value in form.items() if value != "-"}

    def assertion(
        self, *, key: rsa.RSAPrivateKey | None = None, algorithm: str = "PS256", **claims: Any
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": self.token_url(),
            "iss": self.cert_client_id,
            "sub": self.cert_client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "exp": now + 600,
        }
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        thumbprint = {"x5t#S256": b64url(self.certificate.fingerprint(hashes.SHA256()))}
        if algorithm.startswith("RS"):
            thumbprint = {"x5t": b64url(self.certificate.fingerprint(hashes.SHA1()))}
        return jwt.encode(payload, key or self.cert_key, algorithm=algorithm, headers=thumbprint)

    def assertion_form(self, assertion: str) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self.cert_client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": ARM_SCOPE,
        }

    def verify(self, token: str, audience: str = ARM_AUDIENCE) -> dict[str, Any]:
        """Check ``token`` with the JWKS named by the discovery document, both fetched over HTTPS."""
        discovery = self.http.get(
            f"{self.base}/{self.tenant_id}/v2.0/.well-known/openid-configuration"
        ).json()
        keys = jwt.PyJWKSet.from_dict(self.http.get(discovery["jwks_uri"]).json())
        key = next(k for k in keys.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=["RS256"], audience=audience, issuer=discovery["issuer"]
        )
        return claims


def _cli(*args: str) -> dict[str, Any]:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    base = tmp_path_factory.mktemp(f"identity-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{base / 'controlplane.db'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    data = base / "data"
    store = ["--data-dir", str(data), "--database-url", url]
    ids = _cli("init", *store)
    key, certificate = self_signed("cert-app")
    cert_file = base / "cert-app.pem"
    cert_file.write_bytes(pem_of(key, certificate))
    cert_app = _cli(
        "sp", "create", *store, "--name", "cert-app", "--role", "reader",
        "--scope", f"/subscriptions/{ids['subscriptionId']}", "--certificate", str(cert_file),
    )  # fmt: skip
    db = Database.open(url)
    try:
        with db.session() as session:
            onboarding = session.scalars(select(Principal).where(Principal.app_id == ids["clientId"])).one()
            object_id = onboarding.id
    finally:
        db.dispose()
    server = start_server(data, ["--database-url", url])
    http = httpx.Client(verify=ca_context(server.ca_file), timeout=10)
    try:
        yield Plane(
            server, data, url, ids["tenantId"], ids["clientId"], ids["clientSecret"], object_id,
            cert_app["clientId"], key, certificate, http,
        )  # fmt: skip
    finally:
        http.close()
        server.stop()


def assert_oauth_error(reply: httpx.Response, status: int, error: str, code: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    body: dict[str, Any] = reply.json()
    assert set(body) == {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
    }
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert f"Trace ID: {body['trace_id']}" in body["error_description"]
    dt.datetime.strptime(body["timestamp"], "%Y-%m-%d %H:%M:%SZ")
    uuid.UUID(body["trace_id"])
    uuid.UUID(body["correlation_id"])
    return body


# -- discovery --------------------------------------------------------------------------------


def test_discovery_document(plane: Plane) -> None:
    reply = plane.http.get(f"{plane.base}/{plane.tenant_id}/v2.0/.well-known/openid-configuration")
    assert reply.status_code == 200
    document = reply.json()
    base = f"{plane.base}/{plane.tenant_id}"
    assert document["issuer"] == f"{base}/v2.0"
    assert document["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert document["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert document["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"client_secret_post", "private_key_jwt"} <= set(document["token_endpoint_auth_methods_supported"])
    assert {"RS256", "PS256"} <= set(document["token_endpoint_auth_signing_alg_values_supported"])
    assert document["cloud_instance_name"] == f"127.0.0.1:{plane.server.port}"
    # The v1 path and an upper-case tenant id give the same document.
    v1 = plane.http.get(f"{plane.base}/{plane.tenant_id.upper()}/.well-known/openid-configuration")
    assert v1.status_code == 200
    assert v1.json() == document


def test_jwks(plane: Plane) -> None:
    reply = plane.http.get(f"{plane.base}/{plane.tenant_id}/discovery/v2.0/keys")
    assert reply.status_code == 200
    (key,) = reply.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert set(key) == {"kty", "use", "alg", "kid", "n", "e"}
    assert plane.http.get(f"{plane.base}/common/discovery/v2.0/keys").json() == reply.json()


@pytest.mark.parametrize(
    ("tenant", "code"),
    [("00000000-0000-0000-0000-000000000000", 90002), ("contoso.example", 900023)],
)
def test_discovery_of_an_unknown_tenant(plane: Plane, tenant: str, code: int) -> None:
    for path in ("v2.0/.well-known/openid-configuration", "discovery/v2.0/keys"):
        assert_oauth_error(plane.http.get(f"{plane.base}/{tenant}/{path}"), 400, "invalid_request", code)


def test_authorize_says_interactive_sign_in_is_not_supported(plane: Plane) -> None:
    reply = plane.http.get(f"{plane.base}/{plane.tenant_id}/oauth2/v2.0/authorize?response_type=code")
    body = assert_oauth_error(reply, 400, "invalid_request", 70005)
    assert "Interactive sign-in is not supported" in body["error_description"]


# -- tokens with a client secret --------------------------------------------------------------


def test_token_with_client_secret(plane: Plane) -> None:
    before = int(time.time())
    reply = plane.post_token(plane.secret_form())
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3599
    claims = plane.verify(body["access_token"])
    assert claims["aud"] == ARM_AUDIENCE
    assert claims["iss"] == f"{plane.base}/{plane.tenant_id}/v2.0"
    assert claims["tid"] == plane.tenant_id
    assert claims["oid"] == plane.object_id
    assert claims["appid"] == plane.client_id
    assert claims["azpacr"] == "1"
    assert before + 3600 - 5 <= claims["exp"] <= int(time.time()) + 3600
    assert claims["nbf"] <= before


def test_token_with_client_secret_basic_and_another_audience(plane: Plane) -> None:
    basic = base64.b64encode(f"{plane.client_id}:{plane.client_secret}".encode()).decode()
    form = {"grant_type": "client_credentials", "scope": "api://arc-extension//.default"}
    reply = plane.http.post(plane.token_url(), data=form, headers={"Authorization": f"Basic {basic}"})
    assert reply.status_code == 200, reply.text
    assert (
        plane.verify(reply.json()["access_token"], audience="api://arc-extension/")["appid"]
        == plane.client_id
    )


def test_failed_client_authentication_is_401_invalid_client_and_audited(plane: Plane) -> None:
    cases = [
        (plane.secret_form(client_secret="not-the-secret"), 7000215),
        (plane.secret_form(client_id="00000000-0000-0000-0000-00000000dead"), 700016),
        (plane.secret_form(client_secret="-"), 7000218),
    ]
    for form, code in cases:
        assert_oauth_error(plane.post_token(form), 401, "invalid_client", code)
    store = ["--data-dir", str(plane.data_dir), "--database-url", plane.database_url]
    # Entries are written just after the answer is sent: give the last one a moment if needed.
    for _ in range(3):
        entries = _cli("audit", "list", "--limit", "3", *store)["entries"]
        if len(entries) == 3 and entries[0]["detail"].startswith("AADSTS7000218"):
            break
    seen = [
        (e["action"], e["target"], e["principal"], e["result"], e["detail"].split(":")[0]) for e in entries
    ]
    assert seen == [
        ("token/failed", form["client_id"], form["client_id"], "Denied:401", f"AADSTS{code}")
        for form, code in reversed(cases)
    ]
    assert plane.client_secret not in json.dumps(entries)


def test_the_certificate_principal_has_no_secret(plane: Plane) -> None:
    form = plane.secret_form(client_id=plane.cert_client_id, client_secret="anything")
    body = assert_oauth_error(plane.post_token(form), 401, "invalid_client", 7000215)
    assert "has no client secret" in body["error_description"]


# -- tokens with a client assertion -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["PS256", "RS256"])
def test_token_with_client_assertion(plane: Plane, algorithm: str) -> None:
    reply = plane.post_token(plane.assertion_form(plane.assertion(algorithm=algorithm)))
    assert reply.status_code == 200, reply.text
    claims = plane.verify(reply.json()["access_token"])
    assert claims["appid"] == plane.cert_client_id
    assert claims["tid"] == plane.tenant_id
    assert claims["azpacr"] == "2"


def test_client_assertion_failures(plane: Plane) -> None:
    other_key, other_certificate = self_signed("other")
    now = int(time.time())
    cases: list[tuple[str, int]] = [
        (plane.assertion(key=other_key), 700027),  # right thumbprint, wrong key
        (plane.assertion(exp=now - 3600, nbf=now - 7200), 700024),
        (plane.assertion(nbf=now + 3600, exp=now + 7200), 700024),
        (plane.assertion(aud=f"{plane.base}/{plane.tenant_id}/oauth2/token"), 700023),
        (plane.assertion(iss=plane.client_id), 700021),
        (plane.assertion(jti=None), 50027),
        ("not.a.jwt", 50027),
        (jwt.encode({"iss": plane.cert_client_id}, "", algorithm="none"), 700027),
        (
            jwt.encode(
                {"iss": plane.cert_client_id},
                other_key,
                algorithm="RS256",
                headers={"x5t": b64url(other_certificate.fingerprint(hashes.SHA1()))},
            ),
            700027,
        ),
    ]
    for assertion, code in cases:
        reply = plane.post_token(plane.assertion_form(assertion))
        assert_oauth_error(reply, 401, "invalid_client", code)
    wrong_type = {**plane.assertion_form(plane.assertion()), "client_assertion_type": "urn:x"}
    assert_oauth_error(plane.post_token(wrong_type), 400, "invalid_request", 7000219)
    both = {**plane.assertion_form(plane.assertion()), "client_secret": "x"}
    assert_oauth_error(plane.post_token(both), 400, "invalid_request", 90013)


def test_the_token_endpoint_url_under_the_tenant_as_sent_is_accepted(plane: Plane) -> None:
    upper = plane.tenant_id.upper()
    assertion = plane.assertion(aud=plane.token_url(upper))
    assert plane.post_token(plane.assertion_form(assertion), tenant=upper).status_code == 200


# -- the v1 endpoint (ADAL, msrestazure) and the AD FS authority --------------------------------


@pytest.mark.parametrize("tenant", [None, "adfs", "ADFS"])
def test_v1_token_with_client_secret(plane: Plane, tenant: str | None) -> None:
    before = int(time.time())
    reply = plane.post_token(plane.v1_form(), tenant=tenant, v1=True)
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert set(body) == {
        "token_type", "expires_in", "ext_expires_in", "expires_on", "not_before", "resource", "access_token",
    }  # fmt: skip
    assert (body["token_type"], body["expires_in"], body["ext_expires_in"]) == ("Bearer", "3599", "3599")
    assert body["resource"] == ARM_AUDIENCE
    claims = plane.verify(body["access_token"])
    assert (claims["tid"], claims["appid"], claims["oid"]) == (
        plane.tenant_id,
        plane.client_id,
        plane.object_id,
    )
    assert (int(body["expires_on"]), int(body["not_before"])) == (claims["exp"], claims["nbf"])
    assert before + 3600 - 5 <= claims["exp"] <= int(time.time()) + 3600


@pytest.mark.parametrize("tenant", [None, "adfs"])
def test_v1_token_with_client_assertion(plane: Plane, tenant: str | None) -> None:
    assertion = plane.assertion(aud=plane.token_url(tenant, v1=True))
    form = {**plane.assertion_form(assertion), "resource": ARM_AUDIENCE}
    del form["scope"]
    reply = plane.post_token(form, tenant=tenant, v1=True)
    assert reply.status_code == 200, reply.text
    assert plane.verify(reply.json()["access_token"])["appid"] == plane.cert_client_id


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"resource": "-"}, "invalid_request", 900144),
        ({"resource": f"{ARM_AUDIENCE} https://graph.windows.net/"}, "invalid_resource", 500011),
        ({"resource": "no-scheme"}, "invalid_resource", 500011),
        ({"grant_type": "password"}, "unsupported_grant_type", 70003),
    ],
)
def test_bad_v1_token_requests(plane: Plane, changes: dict[str, str], error: str, code: int) -> None:
    assert_oauth_error(plane.post_token(plane.v1_form(**changes), tenant="adfs", v1=True), 400, error, code)


def test_the_adfs_authority_is_described_and_takes_a_scope_too(plane: Plane) -> None:
    document = plane.http.get(f"{plane.base}/adfs/.well-known/openid-configuration")
    assert document.status_code == 200, document.text
    assert document.json()["token_endpoint"] == f"{plane.base}/adfs/oauth2/token"
    assert plane.http.get(document.json()["jwks_uri"]).json()["keys"]
    authorize = plane.http.get(document.json()["authorization_endpoint"])
    assert_oauth_error(authorize, 400, "invalid_request", 70005)
    reply = plane.post_token(plane.secret_form(), tenant="adfs", v1=True)  # scope=<resource>/.default
    assert reply.status_code == 200, reply.text
    assert reply.json()["resource"] == ARM_AUDIENCE
    assert plane.verify(reply.json()["access_token"])["tid"] == plane.tenant_id


def test_msal_and_azure_identity_at_the_adfs_authority(plane: Plane, monkeypatch: pytest.MonkeyPatch) -> None:
    """An AD FS authority is the one MSAL takes without instance discovery: azure-identity with
    ``AZURE_AUTHORITY_HOST`` and tenant ``adfs`` (what azure.azcollection's modules build)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(plane.server.ca_file))
    app = msal.ConfidentialClientApplication(
        plane.client_id, client_credential=plane.client_secret, authority=f"{plane.base}/adfs"
    )
    result = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    assert plane.verify(result["access_token"])["appid"] == plane.client_id
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", plane.base)
    credential = ClientSecretCredential("adfs", plane.client_id, plane.client_secret)
    with credential:
        token = credential.get_token(ARM_SCOPE)
    assert plane.verify(token.token)["oid"] == plane.object_id


def test_the_adfs_authority_knows_no_client_of_no_tenant(plane: Plane) -> None:
    unknown = plane.v1_form(client_id="00000000-0000-0000-0000-00000000beef")
    body = assert_oauth_error(
        plane.post_token(unknown, tenant="adfs", v1=True), 401, "invalid_client", 700016
    )
    assert "was not found in this control plane" in body["error_description"]
    wrong = plane.post_token(plane.v1_form(client_secret="not-the-secret"), tenant="adfs", v1=True)
    assert_oauth_error(wrong, 401, "invalid_client", 7000215)
    # "adfs" names no tenant at the v2.0 endpoint (MSAL's): only ADAL's v1 endpoint has that form
    assert_oauth_error(plane.post_token(plane.secret_form(), tenant="adfs"), 400, "invalid_request", 900023)


# -- malformed requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"grant_type": "-"}, "invalid_request", 900144),
        ({"grant_type": "password"}, "unsupported_grant_type", 70003),
        ({"client_id": "-", "client_secret": "-"}, "invalid_request", 900144),
        ({"client_id": "not-a-guid"}, "invalid_request", 700038),
        ({"scope": "-"}, "invalid_request", 900144),
        ({"scope": "https://management.azure.com/user_impersonation"}, "invalid_scope", 1002012),
        ({"scope": f"{ARM_SCOPE} https://graph.microsoft.com/.default"}, "invalid_scope", 70011),
        ({"scope": "/.default"}, "invalid_scope", 1002012),
        ({"scope": "no-scheme/.default"}, "invalid_scope", 70011),
    ],
)
def test_bad_token_requests(plane: Plane, changes: dict[str, str], error: str, code: int) -> None:
    assert_oauth_error(plane.post_token(plane.secret_form(**changes)), 400, error, code)


@pytest.mark.parametrize(
    ("tenant", "code"), [("00000000-0000-0000-0000-000000000000", 90002), ("organizations", 900023)]
)
def test_token_for_an_unknown_tenant(plane: Plane, tenant: str, code: int) -> None:
    assert_oauth_error(plane.post_token(plane.secret_form(), tenant=tenant), 400, "invalid_request", code)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"grant_type": "client_credentials"}', "application/json"),
        (b"grant_type=client_credentials", None),
        (b"grant_type=%ff%fe", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"grant_type=a&grant_type=b", "application/x-www-form-urlencoded"),
        (b"&".join(b"p%d=1" % i for i in range(100)), "application/x-www-form-urlencoded"),
        (b"scope=" + b"x" * 70_000, "application/x-www-form-urlencoded"),
        (b"", "application/x-www-form-urlencoded"),
        (b"--b\r\nContent-Disposition: form-data\r\n\r\n--b--", "multipart/form-data; boundary=b"),
    ],
)
def test_malformed_bodies_are_oauth_400(plane: Plane, content: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    reply = plane.http.post(plane.token_url(), content=content, headers=headers)
    assert reply.status_code == 400, reply.text
    assert isinstance(reply.json()["error"], str)
    assert reply.json()["error"] == "invalid_request"


def test_a_chunked_body_over_the_form_limit_is_an_oauth_error(plane: Plane) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"scope="
        for _ in range(100):
            yield b"x" * 1024

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = plane.http.post(plane.token_url(), content=chunks(), headers=headers)
    body = assert_oauth_error(reply, 400, "invalid_request", 90013)
    assert "larger than 65536 bytes" in body["error_description"]


@pytest.mark.parametrize(
    "authorization", ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x", "Basic"]
)
def test_malformed_authorization_headers(plane: Plane, authorization: str) -> None:
    form = {"grant_type": "client_credentials", "scope": ARM_SCOPE}
    reply = plane.http.post(plane.token_url(), data=form, headers={"Authorization": authorization})
    assert reply.status_code in (400, 401), reply.text
    assert reply.json()["error"] in ("invalid_request", "invalid_client")


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_token_endpoint_only_takes_post(plane: Plane, method: str) -> None:
    for url in (plane.token_url(), plane.token_url(v1=True), plane.token_url("adfs", v1=True)):
        assert_oauth_error(plane.http.request(method, url), 400, "invalid_request", 900561)


def test_correlation_id_echoes_the_clients_request_id(plane: Plane) -> None:
    request_id = str(uuid.uuid4())
    reply = plane.http.post(
        plane.token_url(), data={"grant_type": "x"}, headers={"client-request-id": request_id}
    )
    assert reply.json()["correlation_id"] == request_id


# -- unmodified Azure SDK and MSAL ------------------------------------------------------------


def test_azure_identity_client_secret_credential(plane: Plane) -> None:
    credential = ClientSecretCredential(
        plane.tenant_id,
        plane.client_id,
        plane.client_secret,
        authority=plane.base,
        disable_instance_discovery=True,
        connection_verify=str(plane.server.ca_file),
    )
    with credential:
        token = credential.get_token(ARM_SCOPE)
    claims = plane.verify(token.token)
    assert claims["oid"] == plane.object_id
    assert abs(token.expires_on - claims["exp"]) <= 1


def test_azure_identity_certificate_credential(plane: Plane) -> None:
    credential = CertificateCredential(
        plane.tenant_id,
        plane.cert_client_id,
        certificate_data=pem_of(plane.cert_key, plane.certificate),
        authority=plane.base,
        disable_instance_discovery=True,
        connection_verify=str(plane.server.ca_file),
    )
    with credential:
        token = credential.get_token(ARM_SCOPE)
    assert plane.verify(token.token)["appid"] == plane.cert_client_id


def test_msal_with_instance_discovery_against_the_control_plane(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests prefers REQUESTS_CA_BUNDLE (if the environment sets it) to the session's own.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(plane.server.ca_file))
    http = requests.Session()
    app = msal.ConfidentialClientApplication(
        plane.client_id,
        client_credential=plane.client_secret,
        authority=f"{plane.base}/{plane.tenant_id}",
        instance_discovery=f"{plane.base}/common/discovery/instance",
        http_client=http,
    )
    result = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    assert plane.verify(result["access_token"])["appid"] == plane.client_id
    unknown = plane.http.get(
        f"{plane.base}/common/discovery/instance",
        params={"authorization_endpoint": "https://login.example/t/oauth2/v2.0/authorize"},
    )
    assert_oauth_error(unknown, 400, "invalid_instance", 50049)
