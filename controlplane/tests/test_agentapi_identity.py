"""Agent API, managed identity tokens, the machine's self-read and disconnect, on both databases."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from agentapi_env import AgentApiEnv

pytest_plugins = ["agentapi_plugin"]  # the agent_api fixture: one server per database


def error_code(reply: Any) -> str:
    code: str = reply.json()["error"]["code"]
    return code


@pytest.mark.parametrize(
    ("resource", "audience"),
    [
        ("https://vault.azure.net", "https://vault.azure.net"),
        ("https://management.azure.com/", "https://management.azure.com/"),
        ("https://storage.azure.com/.default", "https://storage.azure.com"),
        ("api://my-app-id", "api://my-app-id"),
    ],
)
def test_identity_tokens_are_24_hour_jwts_of_the_machine_identity(
    agent_api: AgentApiEnv, resource: str, audience: str
) -> None:
    agent = agent_api.connected_agent()
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None and machine.principal_id is not None
    principal = agent_api.principal(machine.principal_id)
    assert principal is not None
    before = int(time.time())
    reply = agent.identity_token(resource)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["resource"] == audience
    assert body["expires_in"] == "86400"
    claims = agent_api.tokens.verify(body["access_token"], [audience])  # the server's own signing key
    assert claims["aud"] == audience
    assert claims["oid"] == machine.principal_id
    assert claims["sub"] == machine.principal_id
    assert claims["appid"] == principal.app_id
    assert claims["tid"] == agent_api.tenant_id
    assert claims["xms_mirid"] == machine.resource_id
    assert claims["exp"] - claims["iat"] == 86400
    assert before - 2 <= claims["iat"] <= int(time.time()) + 2
    assert body["expires_on"] == str(claims["exp"])
    assert body["not_before"] == str(claims["nbf"])
    assert jwt.get_unverified_header(body["access_token"])["kid"] == agent_api.tokens.key.kid


@pytest.mark.parametrize(
    "resource",
    ["", "vault", "http://vault.azure.net", "https://", "https://a b", "https://x/?q=1", "ftp://x"],
)
def test_unusable_resources_are_400(agent_api: AgentApiEnv, resource: str) -> None:
    agent = agent_api.connected_agent()
    reply = agent.identity_token(resource)
    assert reply.status_code == 400
    assert error_code(reply) in {"InvalidResource", "InvalidRequestContent"}


def test_identity_tokens_need_the_machine_key(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    reply = agent_api.http.post(
        f"/agent/v1/machines/{agent.vm_id}/identity/token",
        json={"resource": "https://vault.azure.net"},
        headers={"Authorization": f"Bearer {agent_api.onboarding_token()}"},
    )
    assert reply.status_code == 401
    assert error_code(reply) == "InvalidAssertion"


def test_the_machine_reads_its_resource_and_pending_upgrade(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    reply = agent.read()
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "resourceId": machine.resource_id,
        "vmId": agent.vm_id,
        "generation": 0,
        "tags": {"env": "test"},
        "agentUpgrade": None,
        "offeredAgentVersion": None,
        "gateway": None,
        "serviceGenerations": {"extd": 0, "gcad": 0},
    }
    agent_api.update_machine(agent.vm_id, extensions_generation=4, configuration_generation=2, generation=4)
    assert agent.read().json()["serviceGenerations"] == {"extd": 4, "gcad": 2}
    upgrade = {"desiredVersion": "1.52.0", "enableAutomaticUpgrade": False}
    agent_api.update_machine(
        agent.vm_id, properties={**machine.properties, "agentUpgrade": upgrade}, generation=5
    )
    body = agent.read().json()
    assert body["agentUpgrade"] == upgrade
    assert body["generation"] == 5


def test_onboarding_may_not_disconnect(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    reply = agent_api.http.delete(
        f"/agent/v1/machines/{agent.vm_id}",
        headers={"Authorization": f"Bearer {agent_api.onboarding_token()}"},
    )
    assert reply.status_code == 403
    assert error_code(reply) == "AuthorizationFailed"
    assert "Microsoft.HybridCompute/machines/delete" in reply.json()["error"]["message"]
    assert agent_api.machine(agent.vm_id) is not None
    assert [e.result for e in agent_api.audit_entries(machine.resource_id, 2)][-1] == "Denied:403"


def test_a_resource_administrator_disconnects_machine_and_identity(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None and machine.principal_id is not None
    admin = agent_api.principal_token("Resource Administrator")
    reply = agent_api.http.delete(
        f"/agent/v1/machines/{agent.vm_id}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"resourceId": machine.resource_id}
    assert agent_api.machine(agent.vm_id) is None
    assert agent_api.principal(machine.principal_id) is None
    entries = agent_api.audit_entries(machine.resource_id, 2)
    assert [(e.action, e.result) for e in entries][-1] == (
        "Microsoft.HybridCompute/machines/delete",
        "Succeeded:200",
    )
    assert entries[-1].principal_id is not None
    assert agent.heartbeat().status_code == 401

    reply = agent_api.http.delete(
        f"/agent/v1/machines/{agent.vm_id}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert reply.status_code == 404
    assert error_code(reply) == "ResourceNotFound"


def test_disconnect_needs_an_access_token(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    reply = agent_api.http.delete(f"/agent/v1/machines/{agent.vm_id}", headers=agent.headers())
    assert reply.status_code == 401
    assert error_code(reply) == "InvalidAuthenticationToken"
    assert agent_api.machine(agent.vm_id) is not None
