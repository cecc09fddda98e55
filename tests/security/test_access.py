"""Who gets in, and who does not, on a real lab: two connected hosts and the control plane.

Forged, expired, ``alg: none``, HS256, wrong-audience and wrong-issuer tokens; a machine's key
used for another machine, a machine's managed identity token against the management API; a
Reader writing; a principal of one resource group reaching another; failed sign-ins throttled;
hostile bodies and names; the TLS the control plane offers (testssl.sh). Each refused with the
status Azure gives, and none a 5xx. (docs/security.md lists what each test shows.)

Needs root and the tools of ``make deps``; ``make security`` runs it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from arc_lab import Host, Lab
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

API = "api-version=2026-09-01"
MANAGEMENT = "https://management.azure.com/"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    started = Lab.start(2)
    try:
        for host in started.hosts:
            started.connect(host, host.name)
        yield started
    finally:
        started.stop()


def _b64_json(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def call(
    lab: Lab,
    method: str,
    path: str,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(lab.env.url + path, data=body, headers=sent, method=method)
    try:
        with lab.plane.open(request) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def machine_path(lab: Lab, name: str, group: str | None = None) -> str:
    init = lab.plane.init
    return (
        f"/subscriptions/{init['subscriptionId']}/resourceGroups/{group or init['resourceGroup']}"
        f"/providers/Microsoft.HybridCompute/machines/{name}?{API}"
    )


def principal(lab: Lab, name: str, role: str, scope: str) -> str:
    """A new service principal with ``role`` at ``scope``: its access token."""
    created = lab.cli("sp", "create", "--name", name, "--role", role, "--scope", scope)
    return lab.plane.token(created["clientId"], created["clientSecret"])


def signing_key(lab: Lab) -> Any:
    pem = (lab.env.data_dir / "keys" / "token-signing.pem").read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


def forged(lab: Lab, case: str) -> str:
    """A token the control plane must refuse, for the admin principal, made as ``case`` says."""
    now = int(time.time())
    issuer = f"{lab.env.url}/{lab.plane.init['tenantId']}/v2.0"
    claims: dict[str, Any] = {
        "aud": MANAGEMENT,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": lab.plane.init["tenantId"],
        "oid": str(uuid.uuid4()),
        "appid": lab.plane.admin["clientId"],
    }
    key = signing_key(lab)
    kid = jwt.get_unverified_header(
        lab.plane.token(lab.plane.admin["clientId"], lab.plane.admin["clientSecret"])
    )
    header = {"kid": kid["kid"]}
    if case == "another key":
        return jwt.encode(
            claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", header
        )
    if case == "expired":
        return jwt.encode(
            {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, key, "RS256", header
        )
    if case == "not yet valid":
        return jwt.encode({**claims, "nbf": now + 3600, "exp": now + 7200}, key, "RS256", header)
    if case == "wrong audience":
        return jwt.encode({**claims, "aud": "https://vault.azure.net"}, key, "RS256", header)
    if case == "wrong issuer":
        return jwt.encode({**claims, "iss": "https://login.microsoftonline.com/x/v2.0"}, key, "RS256", header)
    if case == "alg none":
        return f"{_b64_json({'alg': 'none', 'typ': 'JWT'})}.{_b64_json(claims)}."
    if case == "HS256 with the public key":
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signing_input = ".".join(
            base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
            for d in ({"alg": "HS256", "typ": "JWT", **header}, claims)
        )
        signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    if case == "garbage":
        return "not.a.token"
    raise AssertionError(case)


FORGERIES = [
    "another key",
    "expired",
    "not yet valid",
    "wrong audience",
    "wrong issuer",
    "alg none",
    "HS256 with the public key",
    "garbage",
]


@pytest.mark.parametrize("case", FORGERIES)
def test_forged_tokens_get_401(lab: Lab, case: str) -> None:
    status, headers, body = call(lab, "GET", machine_path(lab, "h1"), forged(lab, case))
    assert status == 401, body
    assert json.loads(body)["error"]["code"] == "InvalidAuthenticationToken"
    assert "invalid_token" in headers.get("www-authenticate", "")


def on_host(host: Host, script: str) -> Any:
    """Run Python ``script`` with the agent's own interpreter on ``host``; its printed JSON."""
    result = host.sh(f"/opt/azcmagent/bin/python3 -c {shlex.quote(script)}")
    return json.loads(result.stdout)


MACHINE_CALL = """
import json, ssl, urllib.request, urllib.error
from pathlib import Path
from arc_agent.identity.jws import AssertionSigner
from arc_agent.identity.signer import load_machine_signer
state = json.loads(Path("/var/opt/azcmagent/agentconfig.json").read_text())
vm = {vm!r} or state["vmId"]
key = load_machine_signer(Path("/var/opt/azcmagent/certs/identity.key"))
signer = AssertionSigner(key, {kid!r} or vm, state["assertionAudience"])
headers = {{"Authorization": "Bearer " + signer.assertion(), "Content-Type": "application/json"}}
url = state["controlPlaneUrl"] + "/agent/v1/machines/" + vm + {path!r}
request = urllib.request.Request(url, data={body!r}, method={method!r}, headers=headers)
context = ssl.create_default_context(cafile="/var/opt/azcmagent/connection-ca.pem")
try:
    with urllib.request.urlopen(request, context=context) as reply:
        print(json.dumps({{"status": reply.status, "body": reply.read().decode()}}))
except urllib.error.HTTPError as error:
    print(json.dumps({{"status": error.code, "body": error.read().decode()}}))
"""


def machine_call(
    host: Host, method: str, path: str, vm: str = "", kid: str = "", body: bytes | None = None
) -> Any:
    return on_host(host, MACHINE_CALL.format(vm=vm, kid=kid, path=path, body=body, method=method))


def test_a_machine_cannot_act_as_another(lab: Lab) -> None:
    h1, h2 = lab.hosts
    other = h2.json("show")["vmId"]
    assert machine_call(h1, "GET", "")["status"] == 200  # its own: fine
    beat = json.dumps({"hostId": "x" * 16, "agentVersion": "1.64.3414.2961"}).encode()
    for kid in ("", other):  # its own kid on the other's URL; the other's kid, signed with its key
        for method, path, body in (
            ("GET", "", None),
            ("POST", "/heartbeat", beat),
            ("POST", "/identity/token", json.dumps({"resource": MANAGEMENT}).encode()),
        ):
            answer = machine_call(h1, method, path, vm=other, kid=kid, body=body)
            assert answer["status"] == 401, answer
            assert json.loads(answer["body"])["error"]["code"] == "InvalidAssertion"


def test_a_machines_identity_gets_nothing_from_the_management_api(lab: Lab) -> None:
    h1 = lab.hosts[0]
    token_script = """
import json, urllib.request, urllib.error
url = "http://127.0.0.1:40342/metadata/identity/oauth2/token?api-version=2020-06-01"
url += "&resource=https://management.azure.com/"
try:
    urllib.request.urlopen(urllib.request.Request(url, headers={"Metadata": "true"}))
except urllib.error.HTTPError as challenge:
    secret = open(challenge.headers["WWW-Authenticate"].split("realm=")[1]).read()
answer = urllib.request.Request(url, headers={"Metadata": "true", "Authorization": "Basic " + secret})
with urllib.request.urlopen(answer) as reply:
    print(reply.read().decode())
"""
    token = on_host(h1, token_script)["access_token"]
    for method, path in (
        ("GET", machine_path(lab, "h1")),
        ("GET", machine_path(lab, "h2")),
        ("DELETE", machine_path(lab, "h2")),
    ):
        status, _headers, body = call(lab, method, path, token)
        assert status == 403, body
        assert json.loads(body)["error"]["code"] == "AuthorizationFailed"
    assert lab.plane.status("h2") == "Connected"


def test_a_reader_cannot_write_and_a_group_principal_cannot_reach_another_group(lab: Lab) -> None:
    init = lab.plane.init
    subscription = f"/subscriptions/{init['subscriptionId']}"
    reader = principal(lab, "sec-reader", "Reader", subscription)
    assert call(lab, "GET", machine_path(lab, "h1"), reader)[0] == 200
    for method, body in (
        ("PATCH", b'{"tags": {"x": "y"}}'),
        ("PUT", b'{"location": "westeurope"}'),
        ("DELETE", None),
    ):
        status, _headers, answer = call(lab, method, machine_path(lab, "h1"), reader, body)
        assert status == 403, answer
    owner = principal(lab, "sec-owner", "Owner", subscription)
    other = "sec-other-group"
    status, _headers, answer = call(
        lab,
        "PUT",
        f"{subscription}/resourcegroups/{other}?api-version=2024-11-01",
        owner,
        json.dumps({"location": init["location"]}).encode(),
    )
    assert status in (200, 201), answer
    scoped = principal(
        lab,
        "sec-scoped",
        "Azure Connected Machine Resource Administrator",
        f"{subscription}/resourceGroups/{other}",
    )
    assert (
        call(lab, "PUT", machine_path(lab, "inside", other), scoped, b'{"location": "westeurope"}')[0] == 200
    )
    for method, body in (("GET", None), ("PATCH", b'{"tags": {"x": "y"}}'), ("DELETE", None)):
        status, _headers, answer = call(lab, method, machine_path(lab, "h1"), scoped, body)
        assert status == 403, answer
    listed = json.loads(
        call(lab, "GET", f"{subscription}/providers/Microsoft.HybridCompute/machines?{API}", scoped)[2]
    )
    assert [machine["name"] for machine in listed["value"]] == ["inside"]


def test_failed_sign_ins_are_throttled(lab: Lab) -> None:
    client = lab.cli(
        "sp",
        "create",
        "--name",
        "sec-throttle",
        "--role",
        "Reader",
        "--scope",
        f"/subscriptions/{lab.plane.init['subscriptionId']}",
    )
    url = f"/{lab.plane.init['tenantId']}/oauth2/v2.0/token"
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": client["clientId"],
            "client_secret": "wrong",
            "scope": "https://management.azure.com/.default",
        }
    )
    statuses = [
        call(
            lab,
            "POST",
            url,
            body=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )[0]
        for _attempt in range(12)
    ]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429], statuses


def test_hostile_bodies_are_refused_clearly_never_with_a_5xx(lab: Lab) -> None:
    admin = lab.plane.token(lab.plane.admin["clientId"], lab.plane.admin["clientSecret"])
    path = machine_path(lab, "hostile")
    started = time.monotonic()
    status, _headers, _answer = call(lab, "PUT", path, admin, b"{" + b" " * (50 * 1024 * 1024) + b"}")
    assert status == 413 and time.monotonic() - started < 10
    cases: dict[str, bytes] = {
        "deeply nested": b'{"location": "westeurope", "tags": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "invalid UTF-8": b'{"location": "westeurope", "tags": {"a": "\xff\xfe"}}',
        "unpaired surrogate": b'{"location": "westeurope", "tags": {"a": "\\ud800"}}',
        "51 tags": json.dumps({"location": "westeurope", "tags": {f"t{n}": "v" for n in range(51)}}).encode(),
        "tag name of 513": json.dumps({"location": "westeurope", "tags": {"n" * 513: "v"}}).encode(),
        "tag value of 257": json.dumps({"location": "westeurope", "tags": {"n": "v" * 257}}).encode(),
        "not JSON": b"<xml/>",
    }
    for case, body in cases.items():
        status, _headers, answer = call(lab, "PUT", path, admin, body)
        assert status == 400, f"{case}: {status} {answer[:300]!r}"
        assert json.loads(answer)["error"]["code"] in ("InvalidRequestContent", "BadRequest"), case
    assert lab.plane.machine("hostile") is None


@pytest.mark.parametrize("name", ["..", ".", "%2e%2e", "..%2fh2", "h1%2f..%2fh2", "a%00b", "web."])
def test_names_cannot_traverse_or_escape(lab: Lab, name: str) -> None:
    admin = lab.plane.token(lab.plane.admin["clientId"], lab.plane.admin["clientSecret"])
    init = lab.plane.init
    raw = (
        f"/subscriptions/{init['subscriptionId']}/resourceGroups/{init['resourceGroup']}"
        f"/providers/Microsoft.HybridCompute/machines/{name}?{API}"
    )
    for method in ("GET", "PUT", "DELETE"):
        status, _headers, answer = call(
            lab, method, raw, admin, b'{"location": "westeurope"}' if method == "PUT" else None
        )
        assert status in (400, 404), f"{method} {name}: {status} {answer[:200]!r}"
    assert lab.plane.status("h2") == "Connected"


def test_tls_offers_nothing_weak(lab: Lab, tmp_path: pathlib.Path) -> None:
    report = tmp_path / "testssl.json"
    testssl = [
        "testssl",
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "off",
        "-p",
        "-s",
        "--jsonfile",
        str(report),
    ]
    command = ["ip", "netns", "exec", lab.env.ctl_ns, *testssl, lab.env.url]
    subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    findings = {item["id"]: item["finding"] for item in json.loads(report.read_text())}
    for protocol in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[protocol].startswith("not offered"), (protocol, findings[protocol])
    assert findings["TLS1_2"].startswith("offered") and findings["TLS1_3"].startswith("offered")
    weak = [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
    ]
    weak.append("cipherlist_AVERAGE")  # the obsolete CBC suites
    for category in weak:
        assert findings[category].startswith("not offered"), (category, findings[category])


def test_the_session_left_the_hosts_connected_and_the_server_well(lab: Lab) -> None:
    """After all of the above: nothing was taken down, no server error was logged."""
    for host in lab.hosts:
        assert lab.plane.status(host.name) == "Connected"
    log = (lab.env.state_dir / "controlplane" / "serve.log").read_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
