"""Agent API, credential renewal and key rotation, on both databases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from agent_client import new_key, public_pem
from agentapi_env import AgentApiEnv, utcnow
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

pytest_plugins = ["agentapi_plugin"]  # the agent_api fixture: one server per database


def error_code(reply: Any) -> str:
    code: str = reply.json()["error"]["code"]
    return code


def spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def certificate_of(reply: Any) -> x509.Certificate:
    return x509.load_pem_x509_certificate(reply.json()["credential"]["certificate"].encode())


def test_renewal_with_the_same_key_extends_the_credential(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    soon = (utcnow() + dt.timedelta(days=30)).replace(microsecond=0)
    agent_api.update_machine(agent.vm_id, credential_not_after=soon)
    assert agent.heartbeat().json()["renewCredential"] is True

    reply = agent.renew()
    assert reply.status_code == 200, reply.text
    certificate = certificate_of(reply)
    certificate.verify_directly_issued_by(
        x509.load_pem_x509_certificate(agent_api.server.ca_file.read_bytes())
    )
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == agent.vm_id
    assert spki(certificate.public_key()) == spki(agent.key.public_key())
    not_after = certificate.not_valid_after_utc
    assert not_after - utcnow() > dt.timedelta(days=89, hours=23)
    assert reply.json()["credential"]["notAfter"] == not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    assert machine.credential_not_after == not_after
    assert machine.credential_not_after > soon
    assert machine.public_key_pem == agent.public_key
    assert agent.heartbeat().json()["renewCredential"] is False

    entries = agent_api.audit_entries(machine.resource_id, 2)
    assert [(e.action, e.result, e.detail) for e in entries][-1] == (
        "Microsoft.HybridCompute/machines/renewCredential/action",
        "Succeeded:200",
        "same key",
    )
    assert entries[-1].principal_name == f"machine {machine.name} ({agent.vm_id})"


def test_renewal_rotates_the_key_and_the_old_key_is_refused_afterwards(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    old_key, rotated = agent.key, new_key("rsa")
    reply = agent.renew(public_key=public_pem(rotated))
    assert reply.status_code == 200, reply.text
    assert spki(certificate_of(reply).public_key()) == spki(rotated.public_key())
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    assert machine.public_key_pem == public_pem(rotated)

    reply = agent.heartbeat(headers=agent.headers(key=old_key))
    assert reply.status_code == 401
    assert error_code(reply) == "InvalidAssertion"
    agent.key = rotated
    assert agent.heartbeat().status_code == 200
    assert agent.renew().status_code == 200


def test_renewal_from_another_host_is_a_clone(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    original_host = agent.host_id
    agent.host_id = f"clone-{uuid.uuid4().hex}"
    reply = agent.renew(public_key=public_pem(new_key()))
    assert reply.status_code == 429
    assert error_code(reply) == "MachineCloned"
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    assert machine.status_reason == "Cloned"
    assert machine.public_key_pem == agent.public_key
    agent.host_id = original_host
    assert agent.heartbeat().status_code == 200


@pytest.mark.parametrize("bad", ["garbage", public_pem(new_key("ec")).replace("PUBLIC", "PRIVATE")])
def test_renewal_with_an_unusable_key_is_400(agent_api: AgentApiEnv, bad: str) -> None:
    agent = agent_api.connected_agent()
    reply = agent.renew(public_key=bad)
    assert reply.status_code == 400
    assert error_code(reply) == "InvalidPublicKey"
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None and machine.public_key_pem == agent.public_key


def test_renewal_after_expiry_is_refused(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    agent_api.update_machine(agent.vm_id, credential_not_after=utcnow() - dt.timedelta(seconds=1))
    reply = agent.renew(public_key=public_pem(new_key()))
    assert reply.status_code == 401
    assert error_code(reply) == "CredentialExpired"
    machine = agent_api.machine(agent.vm_id)
    assert machine is not None
    assert machine.public_key_pem == agent.public_key
    assert [e.result for e in agent_api.audit_entries(f"vmId {agent.vm_id}", 1)] == ["Denied:401"]


def test_renewal_needs_the_host_id(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    reply = agent_api.http.post(
        f"/agent/v1/machines/{agent.vm_id}/credential", json={}, headers=agent.headers()
    )
    assert reply.status_code == 400
    assert "hostId" in reply.json()["error"]["message"]
