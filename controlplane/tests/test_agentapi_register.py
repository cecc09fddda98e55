"""Agent API, registration: POST /agent/v1/register against a running server, on both databases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from agent_client import new_key, public_pem
from agentapi_env import RESOURCE_GROUP, AgentApiEnv, new_name, utcnow
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arc_controlplane.db.tables import Machine, ResourceGroup

pytest_plugins = ["agentapi_plugin"]  # the agent_api fixture: one server per database


def spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def error_code(reply: Any) -> str:
    code: str = reply.json()["error"]["code"]
    return code


def test_register_creates_the_machine_its_identity_and_a_90_day_credential(agent_api: AgentApiEnv) -> None:
    agent = agent_api.agent("rsa")
    name = new_name()
    before = utcnow()
    reply = agent.register(
        agent_api.onboarding_token(), agent_api.registration(agent, name, tags={"env": "prod"})
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    resource_id = agent_api.machine_id(name)
    assert body["resourceId"] == resource_id
    assert uuid.UUID(body["vmId"]).version == 4
    assert body["tenantId"] == agent_api.tenant_id
    assert body["location"] == "westeurope"
    assert body["generation"] == 0
    assert body["heartbeatIntervalSeconds"] == 300
    assert body["assertionAudience"] == agent_api.public_url + "/agent"

    machine = agent_api.machine(body["vmId"])
    assert machine is not None
    assert machine.resource_id == resource_id
    assert machine.connected is True
    assert machine.host_id == agent.host_id
    assert machine.agent_version == "1.50.0"
    assert machine.tags == {"env": "prod"}
    assert machine.properties["osName"] == "linux"
    assert machine.properties["hardwareProfile"] == {
        "numberOfCpuSockets": 1,
        "processors": [{"name": "cpu", "numberOfCores": 2}],
    }
    assert machine.public_key_pem == agent.public_key
    assert machine.principal_id == body["principalId"]
    assert machine.status_reason is None
    assert machine.last_heartbeat is not None and before <= machine.last_heartbeat <= utcnow()
    assert agent_api.status(body["vmId"]).status == "Connected"

    principal = agent_api.principal(body["principalId"])
    assert principal is not None
    assert principal.kind == "ManagedIdentity"
    assert principal.tenant_id == agent_api.tenant_id
    assert principal.display_name == name

    certificate = x509.load_pem_x509_certificate(body["credential"]["certificate"].encode())
    ca = x509.load_pem_x509_certificate(agent_api.server.ca_file.read_bytes())
    certificate.verify_directly_issued_by(ca)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == body["vmId"]
    assert spki(certificate.public_key()) == spki(agent.key.public_key())
    not_after = certificate.not_valid_after_utc
    assert (
        dt.timedelta(days=90) - dt.timedelta(seconds=5)
        <= not_after - before
        <= dt.timedelta(days=90, seconds=5)
    )
    assert body["credential"]["notAfter"] == not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert machine.credential_not_after == not_after
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage

    entries = agent_api.audit_entries(resource_id, 1)
    assert [(e.action, e.result) for e in entries] == [
        ("Microsoft.HybridCompute/machines/write", "Succeeded:201")
    ]
    assert entries[0].principal_id is not None
    assert body["vmId"] in entries[0].detail


def test_a_reader_may_not_register(agent_api: AgentApiEnv) -> None:
    agent = agent_api.agent()
    name = new_name()
    reply = agent.register(agent_api.principal_token("Reader"), agent_api.registration(agent, name))
    assert reply.status_code == 403
    assert error_code(reply) == "AuthorizationFailed"
    assert "Microsoft.HybridCompute/machines/write" in reply.json()["error"]["message"]
    assert agent_api.machine_by_name(name) is None
    assert [e.result for e in agent_api.audit_entries(agent_api.machine_id(name), 1)] == ["Denied:403"]


def test_onboarding_at_another_resource_group_may_not_register(agent_api: AgentApiEnv) -> None:
    agent = agent_api.agent()
    other_group = f"/subscriptions/{agent_api.subscription_id}/resourceGroups/elsewhere"
    with agent_api.db.session() as session:
        session.add(
            ResourceGroup(
                subscription_id=agent_api.subscription_id,
                name="elsewhere",
                name_lower="elsewhere",
                location="westeurope",
                tags={},
                created_at=utcnow(),
            )
        )
    token = agent_api.principal_token("Onboarding", other_group)
    reply = agent.register(token, agent_api.registration(agent, new_name()))
    assert reply.status_code == 403
    assert error_code(reply) == "AuthorizationFailed"


def test_a_missing_resource_group_is_404(agent_api: AgentApiEnv) -> None:
    agent = agent_api.agent()
    reply = agent.register(
        agent_api.onboarding_token(), agent_api.registration(agent, new_name(), resourceGroup="nope")
    )
    assert reply.status_code == 404
    assert error_code(reply) == "ResourceGroupNotFound"
    assert "nope" in reply.json()["error"]["message"]


def test_an_unknown_subscription_is_refused(agent_api: AgentApiEnv) -> None:
    # Roles can only be assigned at known subscriptions, so no one is authorised at an unknown one.
    agent = agent_api.agent()
    reply = agent.register(
        agent_api.principal_token("Owner"),
        agent_api.registration(agent, new_name(), subscriptionId=str(uuid.uuid4())),
    )
    assert reply.status_code == 403
    assert error_code(reply) == "AuthorizationFailed"


def test_tenant_mismatches_are_refused(agent_api: AgentApiEnv) -> None:
    agent = agent_api.agent()
    reply = agent.register(
        agent_api.onboarding_token(), agent_api.registration(agent, new_name(), tenantId=str(uuid.uuid4()))
    )
    assert reply.status_code == 400
    assert error_code(reply) == "TenantMismatch"

    foreign_tenant = str(uuid.uuid4())
    token = agent_api.principal_token("Onboarding", tenant_id=foreign_tenant)
    reply = agent.register(token, agent_api.registration(agent, new_name(), tenantId=foreign_tenant))
    assert reply.status_code == 403
    assert error_code(reply) == "InvalidAuthenticationTokenTenant"


def test_registration_takes_over_a_pre_created_machine(agent_api: AgentApiEnv) -> None:
    name = new_name()
    vm_id = str(uuid.uuid4())
    resource_id = agent_api.machine_id(name)
    now = utcnow()
    with agent_api.db.session() as session:
        session.add(
            Machine(
                resource_id=resource_id,
                resource_id_lower=resource_id.lower(),
                subscription_id=agent_api.subscription_id,
                resource_group_lower=RESOURCE_GROUP.lower(),
                name=name,
                name_lower=name.lower(),
                location="westeurope",
                tags={"owner": "ops"},
                vm_id=vm_id,
                tenant_id=agent_api.tenant_id,
                properties={"agentUpgrade": {"desiredVersion": "1.51.0"}, "osName": "stale"},
                last_status_change=now,
                created_at=now,
                updated_at=now,
            )
        )
    assert agent_api.status(vm_id).status == "AwaitingConnection"
    agent = agent_api.agent()
    reply = agent.register(
        agent_api.onboarding_token(), agent_api.registration(agent, name.upper(), location="West Europe")
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["vmId"] == vm_id
    assert reply.json()["resourceId"] == resource_id
    machine = agent_api.machine(vm_id)
    assert machine is not None
    assert machine.connected is True
    assert machine.principal_id == reply.json()["principalId"]
    assert machine.tags == {"owner": "ops", "env": "test"}
    assert machine.properties["agentUpgrade"] == {"desiredVersion": "1.51.0"}
    assert machine.properties["osName"] == "linux"
    assert agent_api.status(vm_id).status == "Connected"


def test_another_location_for_an_existing_machine_is_409(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    reply = agent.register(
        agent_api.onboarding_token(), agent_api.registration(agent, machine.name, location="eastus")
    )
    assert reply.status_code == 409
    assert error_code(reply) == "InvalidResourceLocation"


def test_a_machine_connected_from_another_host_is_409(agent_api: AgentApiEnv) -> None:
    first = agent_api.connected_agent()
    machine = agent_api.machine(first.vm_id)
    assert machine is not None
    second = agent_api.agent()
    reply = second.register(agent_api.onboarding_token(), agent_api.registration(second, machine.name))
    assert reply.status_code == 409
    assert error_code(reply) == "ResourceExists"
    message = reply.json()["error"]["message"]
    assert "azcmagent disconnect" in message
    assert "--resource-name" in message
    after = agent_api.machine(first.vm_id)
    assert after is not None
    assert after.public_key_pem == first.public_key
    assert after.host_id == first.host_id


def test_the_same_host_may_register_again_with_a_new_key(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    old_key = agent.key
    agent.key = new_key("rsa")
    reply = agent.register(agent_api.onboarding_token(), agent_api.registration(agent, machine.name))
    assert reply.status_code == 200, reply.text
    assert reply.json()["vmId"] == machine.vm_id
    assert reply.json()["principalId"] == machine.principal_id
    after = agent_api.machine(agent.vm_id)
    assert after is not None
    assert after.public_key_pem == agent.public_key
    assert agent.heartbeat().status_code == 200
    assert agent.heartbeat(headers=agent.headers(key=old_key)).status_code == 401


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"unexpected": 1}, "InvalidRequestContent"),
        ({"properties": {"agentUpgrade": {"desiredVersion": "9"}}}, "InvalidRequestContent"),
        ({"properties": {"hardwareProfile": {"numberOfCpuSockets": "1"}}}, "InvalidRequestContent"),
        ({"tags": {"a/b": "c"}}, "InvalidRequestContent"),
        ({"hostId": "short"}, "InvalidRequestContent"),
        ({"cloud": "Mars"}, "InvalidRequestContent"),
        ({"correlationId": "not-a-guid"}, "InvalidRequestContent"),
        ({"resourceName": "bad name!"}, "InvalidResourceName"),
        ({"resourceGroup": "ends-with-dot."}, "InvalidResourceGroup"),
        ({"subscriptionId": "nope"}, "InvalidSubscriptionId"),
        ({"publicKey": "not a key"}, "InvalidPublicKey"),
        ({"publicKey": public_pem(ec.generate_private_key(ec.SECP384R1()))}, "InvalidPublicKey"),
    ],
)
def test_invalid_registrations_are_400(agent_api: AgentApiEnv, change: dict[str, Any], code: str) -> None:
    agent = agent_api.agent()
    reply = agent.register(agent_api.onboarding_token(), agent_api.registration(agent, new_name(), **change))
    assert reply.status_code == 400, reply.text
    assert error_code(reply) == code


def test_a_small_rsa_key_is_refused(agent_api: AgentApiEnv) -> None:
    agent = agent_api.agent()
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    reply = agent.register(
        agent_api.onboarding_token(), agent_api.registration(agent, new_name(), publicKey=public_pem(small))
    )
    assert reply.status_code == 400
    assert error_code(reply) == "InvalidPublicKey"
    assert "1024 bits" in reply.json()["error"]["message"]


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not.a.token", "Basic dXNlcjpwdw=="])
def test_registration_needs_a_valid_access_token(agent_api: AgentApiEnv, authorization: str | None) -> None:
    agent = agent_api.agent()
    headers = {"Authorization": authorization} if authorization else {}
    reply = agent_api.http.post(
        "/agent/v1/register", json=agent_api.registration(agent, new_name()), headers=headers
    )
    assert reply.status_code == 401
    assert error_code(reply) == "InvalidAuthenticationToken"


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b"null", b"[" * 100_000 + b"]" * 100_000, b'{"properties": 5}'],
)
def test_malformed_bodies_are_400_not_500(agent_api: AgentApiEnv, content: bytes) -> None:
    reply = agent_api.http.post(
        "/agent/v1/register",
        content=content,
        headers={
            "Authorization": f"Bearer {agent_api.onboarding_token()}",
            "Content-Type": "application/json",
        },
    )
    assert reply.status_code == 400, reply.text
    assert "error" in reply.json()
