"""Agent API, heartbeats, assertions and status: clones, expiry, disconnection, on both databases."""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from agent_client import AgentClient, new_key
from agentapi_env import AgentApiEnv, utcnow
from conftest import ca_context

pytest_plugins = ["agentapi_plugin"]  # the agent_api fixture: one server per database


def hmac_token(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT keyed with the machine's public key: the classic algorithm-confusion attack."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = (
        part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + part(json.dumps(claims).encode())
    )
    return signed + "." + part(hmac.new(secret, signed.encode(), hashlib.sha256).digest())


def error_code(reply: Any) -> str:
    code: str = reply.json()["error"]["code"]
    return code


def test_heartbeat_records_liveness_version_and_inventory_changes(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent(key_kind="rsa")
    agent_api.update_machine(agent.vm_id, last_heartbeat=utcnow() - dt.timedelta(minutes=4))
    before = utcnow()
    reply = agent.heartbeat(
        agentVersion="1.51.0",
        serviceStatuses={"extensionService": {"status": "Running", "startupType": "Automatic"}},
        changes={"osVersion": "6.12.0", "machineFqdn": None, "cloudMetadata": {"provider": "N/A"}},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"heartbeatIntervalSeconds": 300, "renewCredential": False, "generation": 0}
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    assert machine.last_heartbeat is not None and machine.last_heartbeat >= before
    assert machine.agent_version == "1.51.0"
    assert machine.properties["osVersion"] == "6.12.0"
    assert machine.properties["osName"] == "linux"
    assert "machineFqdn" not in machine.properties
    assert machine.properties["cloudMetadata"] == {"provider": "N/A"}
    assert machine.properties["serviceStatuses"] == {
        "extensionService": {"status": "Running", "startupType": "Automatic"}
    }
    assert agent_api.status(agent.vm_id).status == "Connected"


def test_error_details_make_the_status_error_until_cleared(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    errors = [{"code": "ExtensionServiceDown", "message": "extd is not running"}]
    assert agent.heartbeat(errorDetails=errors).status_code == 200
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    assert machine.error_details == errors
    status = agent_api.status(agent.vm_id)
    assert status.status == "Error"
    errored_at = status.last_status_change
    assert agent.heartbeat(errorDetails=errors).status_code == 200
    assert agent_api.status(agent.vm_id).last_status_change == errored_at
    assert agent.heartbeat().status_code == 200
    healed = agent_api.status(agent.vm_id)
    assert healed.status == "Connected"
    assert healed.last_status_change > errored_at


def test_renewal_is_asked_for_when_45_days_or_less_remain(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    agent_api.update_machine(agent.vm_id, credential_not_after=utcnow() + dt.timedelta(days=45, minutes=1))
    assert agent.heartbeat().json()["renewCredential"] is False
    agent_api.update_machine(agent.vm_id, credential_not_after=utcnow() + dt.timedelta(days=44))
    assert agent.heartbeat().json()["renewCredential"] is True


def test_heartbeat_reports_the_generation(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    agent_api.update_machine(agent.vm_id, generation=7)
    assert agent.heartbeat().json()["generation"] == 7


def bad_assertions(agent_api: AgentApiEnv, vm_id: str, now: float) -> dict[str, dict[str, Any]]:
    return {
        "signed by another key": {"key": new_key()},
        "expired": {"issued_at": now - 900, "lifetime": 600},
        "wrong audience": {"audience": agent_api.public_url + "/other"},
        "management audience": {"audience": "https://management.azure.com/"},
        "lives too long": {"lifetime": 16 * 60},
        "issued in the future": {"issued_at": now + 600},
        "for another machine": {"claims": {"iss": str(uuid.uuid4()), "sub": str(uuid.uuid4())}},
        "without jti": {"claims": {"jti": None}},
        "wrong algorithm": {"key": new_key("rsa")},
    }


@pytest.mark.parametrize(
    "case",
    [
        "signed by another key",
        "expired",
        "wrong audience",
        "management audience",
        "lives too long",
        "issued in the future",
        "for another machine",
        "without jti",
        "wrong algorithm",
    ],
)
def test_bad_assertions_are_401(agent_api: AgentApiEnv, case: str) -> None:
    agent = agent_api.connected_agent()
    options = bad_assertions(agent_api, agent.vm_id, time.time())[case]
    reply = agent.heartbeat(headers=agent.headers(**options))
    assert reply.status_code == 401, reply.text
    assert error_code(reply) == "InvalidAssertion"
    assert reply.headers["www-authenticate"].startswith("Bearer")
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None and machine.agent_version == "1.50.0"


def test_an_assertion_within_the_clock_leeway_is_accepted(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    now = time.time()
    assert agent.heartbeat(headers=agent.headers(issued_at=now + 30)).status_code == 200
    assert agent.heartbeat(headers=agent.headers(issued_at=now - 330, lifetime=300)).status_code == 200


def test_unsigned_and_hmac_assertions_are_refused(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    issued = int(time.time())
    claims: dict[str, Any] = {"iss": agent.vm_id, "sub": agent.vm_id, "aud": agent.audience}
    claims |= {"iat": issued, "exp": issued + 60, "jti": "x"}
    for token in (jwt.encode(claims, "", algorithm="none"), hmac_token(claims, agent.public_key.encode())):
        reply = agent.heartbeat(headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 401
        assert error_code(reply) == "InvalidAssertion"


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer x", "Bearer a.b.c", "Basic abc", "Bearer " + "A" * 20_000]
)
def test_missing_or_garbled_assertions_are_401(agent_api: AgentApiEnv, authorization: str | None) -> None:
    agent = agent_api.connected_agent()
    headers = {"Authorization": authorization} if authorization else {}
    reply = agent_api.http.post(
        f"/agent/v1/machines/{agent.vm_id}/heartbeat",
        json={"hostId": agent.host_id, "agentVersion": "1.0"},
        headers=headers,
    )
    assert reply.status_code == 401
    assert error_code(reply) == "InvalidAssertion"


@pytest.mark.parametrize("vm_id", ["6c0f4d38-45c3-4a4e-9f4b-7d0b5a1f2e90", "not-a-guid", "x" * 300])
def test_unknown_machines_are_401(agent_api: AgentApiEnv, vm_id: str) -> None:
    agent = agent_api.agent()
    agent.vm_id = vm_id
    reply = agent.heartbeat()
    assert reply.status_code == 401
    assert error_code(reply) == "InvalidAssertion"
    assert "No machine" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"agentVersion": "1.0"},
        {"hostId": "host-1234", "agentVersion": "1.0", "changes": {"agentUpgrade": {}}},
        {"hostId": "host-1234", "agentVersion": "1.0", "errorDetails": [{"code": "x"}]},
        {"hostId": "host-1234", "agentVersion": "1.0", "extra": True},
    ],
)
def test_invalid_heartbeats_are_400(agent_api: AgentApiEnv, body: dict[str, Any]) -> None:
    agent = agent_api.connected_agent()
    reply = agent_api.http.post(
        f"/agent/v1/machines/{agent.vm_id}/heartbeat", json=body, headers=agent.headers()
    )
    assert reply.status_code == 400
    assert error_code(reply) == "InvalidRequestContent"


def test_a_clone_gets_429_and_marks_the_machine_until_the_original_registers_again(
    agent_api: AgentApiEnv,
) -> None:
    original = agent_api.connected_agent()
    machine = agent_api.machine(original.vm_id)
    assert machine is not None
    clone = agent_api.agent(host_id=f"clone-{uuid.uuid4().hex}")
    clone.key, clone.vm_id = original.key, original.vm_id  # a copy of the disk: same key, same vmId

    reply = clone.heartbeat(agentVersion="9.9.9", changes={"osName": "cloned"})
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "300"
    assert error_code(reply) == "MachineCloned"
    assert "azcmagent disconnect --force-local-only" in reply.json()["error"]["message"]
    marked = agent_api.machine(original.vm_id)
    assert marked is not None
    assert marked.status_reason == "Cloned"
    assert marked.last_heartbeat == machine.last_heartbeat
    assert marked.agent_version == "1.50.0"
    assert marked.properties["osName"] == "linux"
    status = agent_api.status(original.vm_id)
    assert (status.status, status.status_reason) == ("Connected", "Cloned")

    assert original.heartbeat().status_code == 200
    assert agent_api.status(original.vm_id).status_reason == "Cloned"
    assert clone.heartbeat().status_code == 429

    reply = original.register(agent_api.onboarding_token(), agent_api.registration(original, machine.name))
    assert reply.status_code == 200, reply.text
    healed = agent_api.status(original.vm_id)
    assert (healed.status, healed.status_reason) == ("Connected", None)
    # The original registered again with the same key: the copy still holds it, and is still a clone.
    assert clone.heartbeat().status_code == 429


def test_an_expired_credential_is_401_until_a_new_registration(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    agent_api.update_machine(agent.vm_id, credential_not_after=utcnow() - dt.timedelta(minutes=1))
    reply = agent.heartbeat()
    assert reply.status_code == 401
    assert error_code(reply) == "CredentialExpired"
    message = reply.json()["error"]["message"]
    assert "azcmagent disconnect --force-local-only" in message
    assert "azcmagent connect" in message
    status = agent_api.status(agent.vm_id)
    assert (status.status, status.status_reason) == ("Disconnected", "Expired")
    assert agent.renew().status_code == 401
    assert agent.identity_token("https://vault.azure.net").status_code == 401

    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    agent.key = new_key()
    reply = agent.register(agent_api.onboarding_token(), agent_api.registration(agent, machine.name))
    assert reply.status_code == 200, reply.text
    assert agent.heartbeat().status_code == 200
    status = agent_api.status(agent.vm_id)
    assert (status.status, status.status_reason) == ("Connected", None)


def test_an_expired_machine_can_be_connected_again_from_another_host(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    agent_api.update_machine(agent.vm_id, credential_not_after=utcnow() - dt.timedelta(days=1))
    newcomer = agent_api.agent()
    reply = newcomer.register(agent_api.onboarding_token(), agent_api.registration(newcomer, machine.name))
    assert reply.status_code == 200, reply.text
    assert reply.json()["vmId"] == agent.vm_id
    assert newcomer.heartbeat().status_code == 200
    assert agent.heartbeat().status_code == 401


def test_fifteen_minutes_without_heartbeat_is_disconnected_and_a_heartbeat_heals(
    agent_api: AgentApiEnv,
) -> None:
    agent = agent_api.connected_agent()
    agent_api.update_machine(agent.vm_id, last_heartbeat=utcnow() - dt.timedelta(minutes=16))
    status = agent_api.status(agent.vm_id)
    assert (status.status, status.status_reason) == ("Disconnected", None)
    before = utcnow()
    assert agent.heartbeat().status_code == 200
    status = agent_api.status(agent.vm_id)
    assert status.status == "Connected"
    assert status.last_status_change >= before


def chunked(body: dict[str, Any]) -> Iterator[bytes]:
    """A body without Content-Length: such a heartbeat is answered by the framework's route."""
    yield json.dumps(body).encode()


def test_heartbeats_answered_before_and_by_the_framework_are_alike(agent_api: AgentApiEnv) -> None:
    """Well-formed heartbeats take the fast path; the same with a chunked body goes through the
    framework. Both must give the same answers, refusals included."""
    agent = agent_api.connected_agent()
    url = f"/agent/v1/machines/{agent.vm_id}/heartbeat"
    body = {"hostId": agent.host_id, "agentVersion": "1.50.0"}
    stranger = agent_api.agent()
    cases: list[tuple[dict[str, Any], dict[str, str], int]] = [
        (body, agent.headers(), 200),
        (body, stranger.headers(vm_id=agent.vm_id), 401),  # signed with another key
        ({**body, "hostId": "clone-host"}, agent.headers(), 429),
    ]
    for payload, headers, status in cases:
        fast = agent_api.http.post(url, json=payload, headers=headers)
        framework = agent_api.http.post(
            url, content=chunked(payload), headers={**headers, "Content-Type": "application/json"}
        )
        assert (fast.status_code, framework.status_code) == (status, status), (fast.text, framework.text)
        assert fast.json() == framework.json()
        for header in ("content-type", "www-authenticate", "retry-after"):
            assert fast.headers.get(header) == framework.headers.get(header), header


def test_concurrent_heartbeats_of_many_machines_and_a_clone(agent_api: AgentApiEnv) -> None:
    """Heartbeats that arrive together are written together; each still gets its own answer."""
    agents = [agent_api.connected_agent() for _ in range(12)]
    original = agents[0]
    clone = agent_api.agent(host_id=f"clone-{uuid.uuid4().hex}")
    clone.key, clone.vm_id = original.key, original.vm_id
    since = utcnow()
    senders = [*agents, clone] * 4
    tls = ca_context(agent_api.server.ca_file)

    def send(sender: AgentClient) -> int:
        with httpx.Client(base_url=str(agent_api.http.base_url), verify=tls, timeout=30) as http:
            return http.post(
                f"/agent/v1/machines/{sender.vm_id}/heartbeat",
                json={"hostId": sender.host_id, "agentVersion": "1.50.0"},
                headers=sender.headers(),
            ).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, senders))
    assert statuses == [429 if sender is clone else 200 for sender in senders]
    for agent in agents:
        machine = agent_api.machine(agent.vm_id)
        assert machine is not None and machine.last_heartbeat is not None and machine.last_heartbeat >= since
    assert agent_api.status(original.vm_id).status_reason == "Cloned"
    assert agent_api.status(agents[1].vm_id).status_reason is None


def test_the_last_upgrade_attempt_is_merged_beside_what_was_asked(agent_api: AgentApiEnv) -> None:
    """docs/agent-upgrade.md: the agent reports ``agentUpgrade.lastAttempt*``; what the operator asked
    (``desiredVersion``, ``enableAutomaticUpgrade``) stays, and the agent cannot remove it."""
    agent = agent_api.connected_agent()
    asked = {"desiredVersion": "1.65", "enableAutomaticUpgrade": False}
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    agent_api.update_machine(agent.vm_id, properties={**machine.properties, "agentUpgrade": asked})
    attempt = {
        "lastAttemptDesiredVersion": "1.65.3500.100", "lastAttemptStatus": "Failed",
        "lastAttemptMessage": "the upgrade to 1.65.3500.100 failed its health check: himds does not answer",
        "lastAttemptTimestamp": "2026-12-04T20:00:00Z",
    }  # fmt: skip
    assert agent.heartbeat(agentUpgrade=attempt).status_code == 200
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None and machine.properties["agentUpgrade"] == {**asked, **attempt}
    assert agent.heartbeat(agentUpgrade=None).status_code == 200, "null: nothing new"
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None and machine.properties["agentUpgrade"] == {**asked, **attempt}
    bad = agent.heartbeat(agentUpgrade={"lastAttemptStatus": "Maybe"})
    assert bad.status_code == 400, bad.text
    assert agent.heartbeat(agentUpgrade={"desiredVersion": "9.9"}).status_code == 400, (
        "only the lastAttempt* fields are the agent's"
    )
    assert agent.heartbeat(changes={"agentUpgrade": {}}).status_code == 400, "not an inventory property"
