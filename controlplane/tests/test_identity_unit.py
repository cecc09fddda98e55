"""The token service's pure parts: scopes, form bodies, Basic credentials, client assertions,
discovery URLs."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from arc_controlplane.auth.assertions import AssertionCheck, verify_client_assertion
from arc_controlplane.auth.certificates import (
    CertificateError,
    ClientCertificate,
    certificates_pem,
    parse_certificates,
)
from arc_controlplane.auth.discovery import instance_discovery, tenant_of_authorization_endpoint
from arc_controlplane.auth.oauth_errors import OAuthError, Trace, error_body
from arc_controlplane.auth.oauth_form import parse_basic_authorization, parse_form
from arc_controlplane.auth.token_service import audience_of

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
CLIENT = "6f1b8d0e-8f6a-4c3e-9d55-3d2b8a1c0f00"
ENDPOINT = f"https://cp.example:8443/{uuid.uuid4()}/oauth2/v2.0/token"
FORM = "application/x-www-form-urlencoded"

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def certificate_for(key: Key, days: int = 30) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .sign(key, algorithm)
    )


def thumbprint(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    return base64.urlsafe_b64encode(certificate.fingerprint(algorithm)).rstrip(b"=").decode()


def assertion(key: Key, certificate: x509.Certificate, algorithm: str, **claims: object) -> str:
    now = int(NOW.timestamp())
    payload = {"aud": ENDPOINT, "iss": CLIENT, "sub": CLIENT, "jti": "1", "exp": now + 600, **claims}
    headers = {"x5t": thumbprint(certificate, hashes.SHA1())}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def check(now: dt.datetime = NOW) -> AssertionCheck:
    return AssertionCheck(client_id=CLIENT, audiences=[ENDPOINT], now=now)


def failure_code(exc: pytest.ExceptionInfo[OAuthError]) -> tuple[str, int, int]:
    return exc.value.error, exc.value.code, exc.value.status


@pytest.mark.parametrize(
    ("scope", "audience"),
    [
        ("https://management.azure.com/.default", "https://management.azure.com/"),
        ("https://management.azure.com//.default", "https://management.azure.com/"),
        ("https://management.core.windows.net/.DEFAULT", "https://management.core.windows.net/"),
        ("api://arc/.default", "api://arc/"),
        ("6F1B8D0E-8F6A-4C3E-9D55-3D2B8A1C0F00/.default", CLIENT),
    ],
)
def test_audience_of_a_default_scope(scope: str, audience: str) -> None:
    assert audience_of(scope) == audience


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        ("https://management.azure.com/user_impersonation", 1002012),
        ("/.default", 1002012),
        ("a/.default b/.default", 70011),
        ("management/.default", 70011),
        ("https:///.default", 70011),
        ("https://x/" + "a" * 1100 + "/.default", 70011),
    ],
)
def test_invalid_scopes(scope: str, code: int) -> None:
    with pytest.raises(OAuthError) as exc:
        audience_of(scope)
    assert failure_code(exc) == ("invalid_scope", code, 400)


def test_form_parsing() -> None:
    body = b"grant_type=client_credentials&scope=https%3A%2F%2Fx%2F.default&client_secret=a%2Bb+c&empty="
    assert parse_form(f"{FORM}; charset=UTF-8", body) == {
        "grant_type": "client_credentials",
        "scope": "https://x/.default",
        "client_secret": "a+b c",
        "empty": "",
    }


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (None, b"a=1", "must be 'application/x-www-form-urlencoded', not 'missing'"),
        ("application/json", b"{}", "not 'application/json'"),
        (FORM, b"a=%C3%28", "not a valid form"),
        (FORM, b"a=1&a=2", "'a' was given more than once"),
        (FORM, b"a=" + b"x" * (64 * 1024), "larger than 65536 bytes"),
        (FORM, b"&".join(b"f%d=1" % i for i in range(40)), "not a valid form"),
    ],
)
def test_malformed_forms(content_type: str | None, body: bytes, message: str) -> None:
    with pytest.raises(OAuthError) as exc:
        parse_form(content_type, body)
    assert failure_code(exc) == ("invalid_request", 90013, 400)
    assert message in exc.value.message


def test_basic_credentials() -> None:
    header = "Basic " + base64.b64encode(b"client%3A1:se%2Bcret:x").decode()
    credentials = parse_basic_authorization(header)
    assert credentials is not None
    assert (credentials.client_id, credentials.client_secret) == ("client:1", "se+cret:x")
    assert parse_basic_authorization(None) is None
    with pytest.raises(OAuthError) as exc:
        parse_basic_authorization("Basic " + base64.b64encode(b"no colon").decode())
    assert failure_code(exc) == ("invalid_client", 90013, 401)
    assert exc.value.headers == {"WWW-Authenticate": 'Basic realm="token"'}
    with pytest.raises(OAuthError) as exc:
        parse_basic_authorization("Negotiate abc")
    assert failure_code(exc) == ("invalid_request", 90013, 400)


def test_error_body_is_entras_shape() -> None:
    error = OAuthError("invalid_client", 7000215, "Invalid client secret provided.", status=401)
    request_id = str(uuid.uuid4())
    body = error_body(error, Trace.new(request_id, NOW))
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert body["timestamp"] == "2026-06-01 12:00:00Z"
    assert body["correlation_id"] == request_id
    assert body["error_description"] == (
        f"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: {body['trace_id']}\r\n"
        f"Correlation ID: {request_id}\r\nTimestamp: 2026-06-01 12:00:00Z"
    )
    assert error_body(error, Trace.new("not-a-guid", NOW))["correlation_id"] != "not-a-guid"


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "PS512"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
    ],
)
def test_assertions_signed_by_a_registered_certificate(key: Key, algorithm: str) -> None:
    certificate = certificate_for(key)
    registered = [ClientCertificate(certificate)]
    token = assertion(key, certificate, algorithm)
    assert verify_client_assertion(token, registered, check()) == registered[0]
    # Claims compare case-insensitively; five minutes of skew are allowed.
    token = assertion(key, certificate, algorithm, aud=ENDPOINT.upper() + "/", iss=CLIENT.upper())
    assert verify_client_assertion(token, registered, check(NOW + dt.timedelta(minutes=14))) == registered[0]


def test_a_new_certificate_can_be_added_next_to_the_old_one() -> None:
    old_key, new_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    old, new = certificate_for(old_key), certificate_for(new_key)
    registered = parse_certificates(
        certificates_pem([ClientCertificate(old), ClientCertificate(new)]).encode()
    )
    assert [c.certificate for c in registered] == [old, new]
    assert verify_client_assertion(assertion(new_key, new, "RS256"), registered, check()).certificate == new
    assert verify_client_assertion(assertion(old_key, old, "RS256"), registered, check()).certificate == old


def test_assertion_refusals() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = certificate_for(key, days=10)
    registered = [ClientCertificate(certificate)]
    now = int(NOW.timestamp())
    cases: list[tuple[str, dt.datetime, int]] = [
        (assertion(key, certificate, "RS256", exp=now - 400), NOW, 700024),
        (assertion(key, certificate, "RS256", nbf=now + 400, exp=now + 900), NOW, 700024),
        (assertion(key, certificate, "RS256", exp="soon"), NOW, 50027),
        (assertion(key, certificate, "RS256", sub="someone-else"), NOW, 700021),
        (assertion(key, certificate, "RS256", aud=["https://elsewhere/token"]), NOW, 700023),
        (assertion(key, certificate, "RS256"), NOW + dt.timedelta(days=11), 700027),  # certificate expired
        (jwt.encode({"iss": CLIENT}, key, algorithm="RS256", headers={"x5t": "***"}), NOW, 50027),
        (jwt.encode({"iss": CLIENT}, key, algorithm="RS256", headers={"x5t": "c2hvcnQ"}), NOW, 50027),
        (jwt.encode({"iss": CLIENT}, "secret-key-of-32-bytes-or-more!!", algorithm="HS256", headers={
            "x5t": thumbprint(certificate, hashes.SHA1())}), NOW, 50027),
    ]  # fmt: skip
    for token, when, code in cases:
        with pytest.raises(OAuthError) as exc:
            verify_client_assertion(token, registered, check(when))
        assert failure_code(exc) == ("invalid_client", code, 401), exc.value.message
        assert exc.value.client_id == CLIENT


def test_certificate_files() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = certificate_for(key)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    parsed = parse_certificates(private + certificate.public_bytes(serialization.Encoding.PEM))
    assert "PRIVATE KEY" not in certificates_pem(parsed)
    assert parsed[0].thumbprint == certificate.fingerprint(hashes.SHA1()).hex().upper()
    with pytest.raises(CertificateError, match="no PEM certificate"):
        parse_certificates(private)
    with pytest.raises(CertificateError, match="not a valid PEM certificate"):
        parse_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    edwards = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(CertificateError, match="use an RSA or EC key"):
        parse_certificates(certificate_for(edwards).public_bytes(serialization.Encoding.PEM))


def test_instance_discovery_urls() -> None:
    base = "https://cp.example:8443"
    tenant = str(uuid.uuid4())
    assert (
        tenant_of_authorization_endpoint(f"https://cp.example/{tenant}/oauth2/v2.0/authorize", base) == tenant
    )
    assert (
        tenant_of_authorization_endpoint(f"https://CP.example:8443/{tenant}/oauth2/authorize", base) == tenant
    )
    for other in (
        f"https://cp.example:9443/{tenant}/oauth2/v2.0/authorize",
        f"http://cp.example:8443/{tenant}/oauth2/v2.0/authorize",
        f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        "https://cp.example:8443/",
        "https://[cp/x/oauth2",
    ):
        assert tenant_of_authorization_endpoint(other, base) is None
    answer = instance_discovery(base, tenant)
    assert answer["tenant_discovery_endpoint"] == f"{base}/{tenant}/v2.0/.well-known/openid-configuration"
    assert answer["metadata"][0]["aliases"] == ["cp.example:8443"]
