"""Managed identity: challenge key files, the token cache, and the whole flow over HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from himds_helpers import get, make_state, make_system, serving

from arc_agent.config.connection import ConnectionState
from arc_agent.cpclient.agentapi import (
    Cloned,
    CredentialExpired,
    MachineUnknown,
    RequestRefused,
    ServerTrouble,
)
from arc_agent.cpclient.transport import ControlPlaneUnreachable, Reply
from arc_agent.himds.api import HimdsApi
from arc_agent.himds.instance import InstanceMetadata
from arc_agent.himds.tokens import (
    ChallengeStore,
    TokenCache,
    TokenUnavailable,
    control_plane_token_source,
    parse_token,
)

TOKEN_PATH = "/metadata/identity/oauth2/token"
RESOURCE = "https://vault.azure.net"
NOW = 1_795_327_583
DAY = 86400


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ControlPlaneTokens:
    """Answers as the control plane does (docs/agent-protocol.md §5.5); counts the calls."""

    def __init__(self, clock: Clock | None = None, life: int = DAY) -> None:
        self.clock = clock or Clock(time.time())
        self.life = life
        self.calls: list[str] = []
        self.failure: TokenUnavailable | None = None
        self.delay = 0.0

    def __call__(self, resource: str) -> Mapping[str, Any]:
        self.calls.append(resource)
        if self.delay:
            time.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        issued = int(self.clock())
        return {
            "access_token": f"eyJ.{resource}.{len(self.calls)}",
            "expires_on": str(issued + self.life),
            "expires_in": str(self.life),
            "not_before": str(issued - 300),
            "resource": resource,
            "token_type": "Bearer",
        }


# --- the challenge store ------------------------------------------------------------------------


@pytest.fixture
def tokens_dir(tmp_path: Path) -> Path:
    return tmp_path / "var/opt/azcmagent/tokens"


@pytest.fixture
def store(tokens_dir: Path) -> Iterator[ChallengeStore]:
    challenges = ChallengeStore(tokens_dir)
    yield challenges
    challenges.close()


def test_issue_writes_a_private_key_file(store: ChallengeStore, tokens_dir: Path) -> None:
    path = store.issue()
    assert path.parent == tokens_dir and path.suffix == ".key"
    assert re.fullmatch(r"[0-9a-f]{32}\.key", path.name)
    mode = path.stat().st_mode
    assert stat.S_IMODE(mode) == 0o640 and stat.S_ISREG(mode)
    secret = path.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert stat.S_IMODE(tokens_dir.stat().st_mode) == 0o750
    assert store.issue() != path


def test_key_files_are_single_use(store: ChallengeStore) -> None:
    path = store.issue()
    claim = store.redeem(path.read_text())
    assert claim is not None
    assert store.redeem(path.read_text()) is None  # in use by another request
    claim.consume()
    assert not path.exists()
    assert store.redeem("0" * 64) is None
    assert store.pending_count() == 0


def test_a_released_claim_can_be_used_again(store: ChallengeStore) -> None:
    path = store.issue()
    secret = path.read_text()
    claim = store.redeem(secret)
    assert claim is not None
    claim.release()
    assert path.exists()
    again = store.redeem(secret)
    assert again is not None
    again.consume()


@pytest.mark.parametrize("secret", ["", "x" * 5000, "not the secret"])
def test_wrong_secrets_are_refused(store: ChallengeStore, secret: str) -> None:
    store.issue()
    assert store.redeem(secret) is None


def test_expired_challenge_is_refused_and_deleted(tokens_dir: Path) -> None:
    clock = Clock(100.0)
    store = ChallengeStore(tokens_dir, lifetime=60, clock=clock)
    try:
        path = store.issue()
        secret = path.read_text()  # before the clock moves: the janitor may delete the file at once
        clock.now += 61
        assert store.redeem(secret) is None
        assert not path.exists()
    finally:
        store.close()


def test_a_claim_released_after_expiry_deletes_the_file(tokens_dir: Path) -> None:
    clock = Clock(100.0)
    store = ChallengeStore(tokens_dir, lifetime=60, clock=clock)
    try:
        path = store.issue()
        claim = store.redeem(path.read_text())
        assert claim is not None
        clock.now += 61
        claim.release()
        assert not path.exists()
    finally:
        store.close()


def test_unused_key_files_are_deleted_when_they_expire(tokens_dir: Path) -> None:
    store = ChallengeStore(tokens_dir, lifetime=0.3)
    try:
        first = store.issue()
        time.sleep(0.15)
        second = store.issue()
        deadline = time.monotonic() + 5
        while first.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not first.exists()
        while second.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not second.exists()
        assert store.pending_count() == 0
    finally:
        store.close()


def _voluntary_switches(native_id: int) -> int:
    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def test_the_janitor_sleeps_while_nothing_is_pending(tokens_dir: Path) -> None:
    store = ChallengeStore(tokens_dir, lifetime=0.1)
    try:
        store.issue()
        deadline = time.monotonic() + 5
        while store.pending_count() and time.monotonic() < deadline:
            time.sleep(0.02)
        janitor = next(t for t in threading.enumerate() if t.name == "himds-challenges")
        assert janitor.native_id is not None
        time.sleep(0.1)
        before = _voluntary_switches(janitor.native_id)
        time.sleep(1.5)
        assert _voluntary_switches(janitor.native_id) == before  # it did not wake up once
    finally:
        store.close()
    assert not janitor.is_alive()


def test_leftover_key_files_are_deleted_before_the_first_challenge(tokens_dir: Path) -> None:
    tokens_dir.mkdir(parents=True)
    (tokens_dir / "0123.key").write_text("old")
    (tokens_dir / "keep.txt").write_text("not ours")
    store = ChallengeStore(tokens_dir)
    try:
        assert (tokens_dir / "0123.key").exists()  # nothing happens before the first challenge
        path = store.issue()
        assert sorted(p.name for p in tokens_dir.iterdir()) == sorted([path.name, "keep.txt"])
    finally:
        store.close()


def test_close_deletes_outstanding_key_files(tokens_dir: Path) -> None:
    store = ChallengeStore(tokens_dir)
    paths = [store.issue() for _ in range(3)]
    store.close()
    assert not any(path.exists() for path in paths)
    with pytest.raises(TokenUnavailable) as raised:
        store.issue()
    assert raised.value.status == HTTPStatus.SERVICE_UNAVAILABLE


def test_too_many_outstanding_challenges(tokens_dir: Path) -> None:
    store = ChallengeStore(tokens_dir, max_pending=2)
    try:
        store.issue()
        store.issue()
        with pytest.raises(TokenUnavailable) as raised:
            store.issue()
        assert raised.value.status == HTTPStatus.TOO_MANY_REQUESTS
    finally:
        store.close()


def test_unwritable_tokens_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "tokens"
    blocker.write_text("a file where the directory should be")
    store = ChallengeStore(blocker)
    with pytest.raises(TokenUnavailable) as raised:
        store.issue()
    assert raised.value.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert str(blocker) in raised.value.description and "writable by himds" in raised.value.description


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another group")
def test_key_files_belong_to_root_and_the_himds_group(tokens_dir: Path) -> None:
    store = ChallengeStore(tokens_dir, group=4242)
    try:
        path = store.issue()
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 4242)
        assert (tokens_dir.stat().st_uid, tokens_dir.stat().st_gid) == (0, 4242)
    finally:
        store.close()


# --- tokens -------------------------------------------------------------------------------------


def test_tokens_are_cached_until_five_minutes_before_expiry() -> None:
    clock = Clock()
    source = ControlPlaneTokens(clock)
    cache = TokenCache(source, clock=clock)
    first = cache.get(RESOURCE)
    assert cache.get(RESOURCE) is first
    clock.now += DAY - 301
    assert cache.get(RESOURCE) is first
    clock.now += 2
    assert cache.get(RESOURCE) is not first
    assert source.calls == [RESOURCE, RESOURCE]


def test_short_tokens_are_refreshed_at_a_tenth_of_their_life() -> None:
    clock = Clock()
    cache = TokenCache(ControlPlaneTokens(clock, life=600), clock=clock)
    token = cache.get(RESOURCE)
    assert token.refresh_at == pytest.approx(NOW + 600 - 90)  # life counted from not_before


def test_each_resource_has_its_own_token() -> None:
    source = ControlPlaneTokens()
    cache = TokenCache(source)
    assert cache.get("https://a.example").access_token != cache.get("https://b.example").access_token
    cache.get("https://a.example")
    assert source.calls == ["https://a.example", "https://b.example"]


def test_the_cache_is_bounded() -> None:
    source = ControlPlaneTokens()
    cache = TokenCache(source, max_entries=2)
    for name in ("a", "b", "c", "a"):
        cache.get(f"https://{name}.example")
    assert source.calls == [f"https://{name}.example" for name in ("a", "b", "c", "a")]


def test_forget_drops_every_token() -> None:
    source = ControlPlaneTokens()
    cache = TokenCache(source)
    cache.get(RESOURCE)
    cache.forget()
    cache.get(RESOURCE)
    assert len(source.calls) == 2


def test_a_still_valid_token_is_served_when_the_control_plane_fails() -> None:
    clock = Clock()
    source = ControlPlaneTokens(clock)
    cache = TokenCache(source, clock=clock)
    token = cache.get(RESOURCE)
    clock.now += DAY - 200  # refresh due, 200 s of life left
    source.failure = TokenUnavailable(HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "down")
    assert cache.get(RESOURCE) is token
    source.failure = TokenUnavailable(HTTPStatus.NOT_FOUND, "identity_not_found", "gone")
    with pytest.raises(TokenUnavailable):  # a refusal is not papered over
        cache.get(RESOURCE)
    source.failure = TokenUnavailable(HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "down")
    clock.now += 150  # 50 s left: too little to hand out
    with pytest.raises(TokenUnavailable):
        cache.get(RESOURCE)


def test_concurrent_requests_make_one_control_plane_call() -> None:
    source = ControlPlaneTokens()
    source.delay = 0.2
    cache = TokenCache(source)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(RESOURCE).access_token)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert source.calls == [RESOURCE]


def test_parse_token_fills_in_what_is_missing() -> None:
    token = parse_token({"access_token": "t", "expires_in": 3600}, RESOURCE, NOW)
    assert (token.expires_on, token.resource, token.token_type) == (NOW + 3600, RESOURCE, "Bearer")
    assert token.answer(NOW + 600) == {
        "access_token": "t",
        "expires_on": str(NOW + 3600),
        "expires_in": "3000",
        "not_before": str(NOW),
        "resource": RESOURCE,
        "token_type": "Bearer",
    }


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"access_token": "", "expires_on": str(NOW + 60)},
        {"access_token": "t"},
        {"access_token": "t", "expires_on": "soon"},
        {"access_token": "t", "expires_on": True},
        {"access_token": "t", "expires_on": str(NOW - 1)},
    ],
)
def test_parse_token_refuses_unusable_answers(document: dict[str, Any]) -> None:
    with pytest.raises(TokenUnavailable) as raised:
        parse_token(document, RESOURCE, NOW)
    assert raised.value.status == HTTPStatus.BAD_GATEWAY


def _reply(status: int, code: str) -> Reply:
    document = {"error": {"code": code, "message": f"{code} happened"}}
    return Reply(status, {"retry-after": "60"}, json.dumps(document).encode(), document)


@pytest.mark.parametrize(
    ("failure", "status", "error"),
    [
        (CredentialExpired(_reply(401, "CredentialExpired")), 403, "credential_expired"),
        (MachineUnknown(_reply(401, "InvalidAssertion")), 403, "machine_unknown"),
        (Cloned(_reply(429, "MachineCloned")), 409, "machine_cloned"),
        (RequestRefused(_reply(404, "IdentityNotFound")), 404, "identity_not_found"),
        (RequestRefused(_reply(400, "InvalidResource")), 400, "invalid_resource"),
        (ServerTrouble(_reply(500, "InternalServerError")), 502, "bad_gateway"),
        (ControlPlaneUnreachable("https://cp.example.net", "connection refused"), 503, "service_unavailable"),
    ],
)
def test_control_plane_failures_become_answers(failure: Exception, status: int, error: str) -> None:
    def fetch(resource: str) -> Mapping[str, Any]:
        raise failure

    with pytest.raises(TokenUnavailable) as raised:
        control_plane_token_source(fetch)(RESOURCE)
    assert (raised.value.status, raised.value.error) == (status, error)
    assert raised.value.description


def test_control_plane_source_passes_answers_through() -> None:
    answer = {"access_token": "t", "expires_on": "1"}
    assert control_plane_token_source(lambda resource: answer)(RESOURCE) is answer


# --- the flow over HTTP -------------------------------------------------------------------------


class Himds:
    def __init__(self, port: int, tokens_dir: Path, source: ControlPlaneTokens) -> None:
        self.port = port
        self.tokens_dir = tokens_dir
        self.source = source


@pytest.fixture
def himds(tokens_dir: Path) -> Iterator[Himds]:
    source = ControlPlaneTokens()
    state, system = make_state(), make_system()
    api = HimdsApi(
        "9.9",
        state=lambda: state,
        metadata=InstanceMetadata(lambda: system),
        challenges=ChallengeStore(tokens_dir),
        tokens=TokenCache(source),
    )
    with serving(api) as port:
        yield Himds(port, tokens_dir, source)


def token_target(resource: str = RESOURCE, api_version: str = "2020-06-01", **extra: str) -> str:
    return f"{TOKEN_PATH}?{urlencode({'api-version': api_version, 'resource': resource, **extra})}"


def read_challenge(header: str, tokens_dir: Path) -> str:
    """What MSAL (msal/managed_identity.py ``_obtain_token_on_arc``) and azure-identity
    (``azure_arc._validate_key_file``) do with the challenge, with the tokens directory moved."""
    challenge = header.split("=")
    assert len(challenge) == 2 and challenge[0].lower() == "basic realm"
    realm = challenge[1]
    assert os.path.dirname(realm) == str(tokens_dir)
    assert realm.endswith(".key") and os.path.exists(realm)
    filename = os.path.join(str(tokens_dir), os.path.splitext(os.path.basename(realm))[0] + ".key")
    assert os.stat(filename).st_size <= 4096
    with open(filename) as stream:
        return stream.read()


def msal_like_token(himds: Himds, resource: str = RESOURCE) -> dict[str, Any]:
    first = get(himds.port, token_target(resource))
    assert first.status == 401, first.body
    secret = read_challenge(first.headers["www-authenticate"], himds.tokens_dir)
    second = get(himds.port, token_target(resource), {"Metadata": "true", "Authorization": f"Basic {secret}"})
    assert second.status == 200, second.body
    payload: dict[str, Any] = second.json()
    assert payload.get("access_token") and payload.get("expires_in")
    return payload


def test_challenge_flow(himds: Himds) -> None:
    started = int(time.time())
    payload = msal_like_token(himds)
    assert set(payload) == {
        "access_token",
        "expires_on",
        "expires_in",
        "not_before",
        "resource",
        "token_type",
    }
    assert all(isinstance(value, str) for value in payload.values())
    assert payload["resource"] == RESOURCE and payload["token_type"] == "Bearer"
    assert payload["access_token"] == f"eyJ.{RESOURCE}.1"
    assert started + DAY - 5 <= int(payload["expires_on"]) <= int(time.time()) + DAY
    assert DAY - 5 <= int(payload["expires_in"]) <= DAY
    assert list(himds.tokens_dir.glob("*.key")) == []  # used once, deleted


def test_second_token_comes_from_the_cache(himds: Himds) -> None:
    first = msal_like_token(himds)
    second = msal_like_token(himds)
    assert first["access_token"] == second["access_token"]
    assert himds.source.calls == [RESOURCE]
    msal_like_token(himds, "https://management.azure.com/")
    assert himds.source.calls == [RESOURCE, "https://management.azure.com/"]


def test_both_documented_api_versions(himds: Himds) -> None:
    for version in ("2019-11-01", "2020-06-01"):
        assert get(himds.port, token_target(api_version=version)).status == 401
    reply = get(himds.port, token_target(api_version="2019-08-15"))
    assert reply.status == 400
    assert reply.json()["error_description"].endswith("Supported are 2019-11-01 2020-06-01")


def test_a_used_secret_is_refused(himds: Himds) -> None:
    first = get(himds.port, token_target())
    secret = read_challenge(first.headers["www-authenticate"], himds.tokens_dir)
    auth = {"Metadata": "true", "Authorization": f"Basic {secret}"}
    assert get(himds.port, token_target(), auth).status == 200
    again = get(himds.port, token_target(), auth)
    assert again.status == 401
    assert "www-authenticate" not in again.headers
    assert again.json()["error"] == "invalid_secret"


@pytest.mark.parametrize("authorization", ["Basic nonsense", "Bearer abc", "Basic", ""])
def test_wrong_authorization_is_refused_without_a_new_challenge(himds: Himds, authorization: str) -> None:
    reply = get(himds.port, token_target(), {"Metadata": "true", "Authorization": authorization})
    assert reply.status == 401
    assert "www-authenticate" not in reply.headers
    assert "new challenge" in reply.json()["error_description"]
    assert list(himds.tokens_dir.glob("*.key")) == []


def test_the_secret_survives_a_control_plane_failure(himds: Himds) -> None:
    """HTTP clients (azure-core) retry a 5xx with the same Authorization header."""
    first = get(himds.port, token_target())
    secret = read_challenge(first.headers["www-authenticate"], himds.tokens_dir)
    auth = {"Metadata": "true", "Authorization": f"Basic {secret}"}
    himds.source.failure = TokenUnavailable(
        HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "cannot reach the control plane"
    )
    failed = get(himds.port, token_target(), auth)
    assert failed.status == 503
    assert failed.json() == {
        "error": "service_unavailable",
        "error_description": "cannot reach the control plane",
    }
    himds.source.failure = None
    assert get(himds.port, token_target(), auth).status == 200
    assert get(himds.port, token_target(), auth).status == 401


@pytest.mark.parametrize(
    "target",
    [
        f"{TOKEN_PATH}?api-version=2020-06-01",
        f"{TOKEN_PATH}?api-version=2020-06-01&resource=",
        f"{TOKEN_PATH}?api-version=2020-06-01&resource=a&resource=b",
    ],
)
def test_resource_is_required(himds: Himds, target: str) -> None:
    reply = get(himds.port, target)
    assert reply.status == 400
    assert "resource" in reply.json()["error_description"]
    assert list(himds.tokens_dir.glob("*.key")) == []


@pytest.mark.parametrize("resource", ["https://a.example/ b", "x" * 513, "https://a\x01.example"])
def test_unusable_resource(himds: Himds, resource: str) -> None:
    reply = get(himds.port, token_target(resource))
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_resource"


@pytest.mark.parametrize("parameter", ["client_id", "object_id", "mi_res_id", "msi_res_id"])
def test_user_assigned_identities_are_not_supported(himds: Himds, parameter: str) -> None:
    reply = get(himds.port, token_target(**{parameter: "c1bcd2b4-0000-4000-8000-000000000000"}))
    assert reply.status == 400
    assert "User-assigned identities are not supported" in reply.json()["error_description"]


def test_not_connected_gets_no_challenge(tokens_dir: Path) -> None:
    api = HimdsApi("9.9", challenges=ChallengeStore(tokens_dir), tokens=TokenCache(ControlPlaneTokens()))
    with serving(api) as port:
        reply = get(port, token_target())
    assert reply.status == 404
    assert reply.json()["error"] == "not_connected"
    assert "azcmagent connect" in reply.json()["error_description"]
    assert not tokens_dir.exists()


def test_without_a_token_source(tokens_dir: Path) -> None:
    state = make_state()
    api = HimdsApi("9.9", state=lambda: state, challenges=ChallengeStore(tokens_dir))
    with serving(api) as port:
        reply = get(port, token_target())
    assert reply.status == 501
    assert not tokens_dir.exists()


def test_many_callers_at_once(himds: Himds) -> None:
    himds.source.delay = 0.1
    results: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(msal_like_token(himds)["access_token"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 16 and len(set(results)) == 1
    assert himds.source.calls == [RESOURCE]
    assert list(himds.tokens_dir.glob("*.key")) == []


def _can_run_azure_identity_in_a_namespace() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private mount namespace"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "needs unshare(1) and mount(8)"
    if not os.path.isdir("/var/opt"):
        return "needs /var/opt to exist to mount a tmpfs over it"
    try:
        import azure.identity  # noqa: F401
    except ImportError:
        return "azure-identity is not installed"
    return None


def test_azure_identity_managed_identity_credential_unmodified() -> None:
    """azure-identity's ``ManagedIdentityCredential`` and MSAL's ``ManagedIdentityClient``
    against a real himds server.

    It reads key files only from ``/var/opt/azcmagent/tokens``, so this runs in a private mount
    namespace whose ``/var/opt`` is a fresh tmpfs: the host's files are never touched.
    """
    reason = _can_run_azure_identity_in_a_namespace()
    if reason:
        pytest.skip(reason)
    probe = Path(__file__).with_name("azure_identity_probe.py")
    script = f'mount -t tmpfs -o mode=0755 arc-test /var/opt && exec "{sys.executable}" "{probe}"'
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0 and "unshare failed" in result.stderr:
        pytest.skip(f"no mount namespaces here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["token"] == f"token-for-{RESOURCE}"
    assert outcome["msal_token"] == "token-for-https://management.azure.com/", outcome["msal_error"]
    assert outcome["calls"] == [RESOURCE, "https://management.azure.com/"]
    assert abs(outcome["expires_on"] - 4_102_444_800) <= 2
    assert outcome["leftovers"] == []
    assert not os.path.exists("/var/opt/azcmagent")  # nothing leaked onto the host


def test_state_change_is_seen_by_the_token_endpoint(tokens_dir: Path) -> None:
    current: list[ConnectionState | None] = [make_state()]
    api = HimdsApi(
        "9.9",
        state=lambda: current[0],
        challenges=ChallengeStore(tokens_dir),
        tokens=TokenCache(ControlPlaneTokens()),
    )
    with serving(api) as port:
        assert get(port, token_target()).status == 401
        current[0] = None
        assert get(port, token_target()).status == 404


def test_challenges_are_limited_per_caller_not_for_everyone(tokens_dir: Path) -> None:
    store = ChallengeStore(tokens_dir, max_pending=100, max_per_caller=3)
    try:
        for _ in range(3):
            store.issue(65534)
        with pytest.raises(TokenUnavailable) as raised:
            store.issue(65534)
        assert raised.value.status == HTTPStatus.TOO_MANY_REQUESTS
        assert "user id 65534" in raised.value.description
        assert store.issue(0).exists()  # another user is not affected
        claim = store.redeem(store.issue(0).read_text())
        assert claim is not None
        claim.consume()
    finally:
        store.close()
