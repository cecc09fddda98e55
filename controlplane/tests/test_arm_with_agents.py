"""The management API and the agent API together: a machine registered by an agent, as ARM
shows it; a PATCH of ``agentUpgrade`` waking the agent's long-poll at once; a DELETE ending it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from agent_client import AgentClient
from agentapi_env import DATABASES, AgentApiEnv, start_env

HC = "2026-09-01"


@pytest.fixture(scope="module", params=DATABASES)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentApiEnv]:
    yield from start_env(request.param, tmp_path_factory.mktemp(f"arm-agents-{request.param}"), request)


def manage(env: AgentApiEnv, method: str, path: str, role: str, body: object = None) -> httpx.Response:
    """A management call by a principal with ``role`` at the subscription."""
    token = env.principal_token(role)
    headers = {"Authorization": f"Bearer {token}"}
    return env.http.request(method, path, params={"api-version": HC}, headers=headers, json=body)


def poll_in_background(agent: AgentClient, generation: int) -> tuple[threading.Thread, list[httpx.Response]]:
    replies: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: replies.append(agent.notifications(generation=generation, wait=30))
    )
    poll.start()
    time.sleep(0.3)
    assert poll.is_alive()
    return poll, replies


def test_a_registered_machine_as_arm_shows_it(env: AgentApiEnv) -> None:
    agent = env.connected_agent("arm-view-host")
    reply = manage(env, "GET", env.machine_id("ARM-VIEW-HOST"), "Reader")
    assert reply.status_code == 200, reply.text
    machine = reply.json()
    assert machine["id"] == env.machine_id("arm-view-host")
    assert machine["identity"]["type"] == "SystemAssigned"
    assert machine["identity"]["tenantId"] == env.tenant_id
    assert machine["identity"]["principalId"]
    properties = machine["properties"]
    assert (properties["status"], properties["agentVersion"], properties["vmId"]) == (
        "Connected",
        "1.50.0",
        agent.vm_id,
    )
    assert properties["osName"] == "linux"
    assert properties["machineFqdn"] == "arm-view-host.example.test"
    assert properties["detectedProperties"] == {"manufacturer": "QEMU"}
    assert properties["clientPublicKey"]
    listed = manage(
        env,
        "GET",
        f"/subscriptions/{env.subscription_id}/providers/Microsoft.HybridCompute/machines",
        "Reader",
    )
    assert "arm-view-host" in [m["name"] for m in listed.json()["value"]]


def test_patching_agent_upgrade_wakes_the_agent_at_once(env: AgentApiEnv) -> None:
    agent = env.connected_agent()
    machine = env.machine(agent.vm_id)
    assert machine is not None
    poll, replies = poll_in_background(agent, machine.generation)
    started = time.monotonic()
    env.publish_agent("1.51.0.0")
    body = {"properties": {"agentUpgrade": {"desiredVersion": "1.51.0.0"}}}
    patched = manage(env, "PATCH", env.machine_id(machine.name), "Resource Administrator", body)
    assert patched.status_code == 200, patched.text
    poll.join(timeout=10)
    elapsed = time.monotonic() - started
    assert not poll.is_alive()
    assert replies[0].status_code == 200
    assert replies[0].json() == {"generation": machine.generation + 1}
    assert elapsed < 2  # woken by the notifier, not by a periodic re-read


def test_deleting_the_machine_ends_the_agents_poll_and_removes_its_identity(env: AgentApiEnv) -> None:
    agent = env.connected_agent()
    machine = env.machine(agent.vm_id)
    assert machine is not None and machine.principal_id is not None
    poll, replies = poll_in_background(agent, machine.generation)
    deleted = manage(env, "DELETE", env.machine_id(machine.name), "Resource Administrator")
    assert deleted.status_code == 202, deleted.text
    poll.join(timeout=5)
    assert not poll.is_alive()
    assert replies[0].status_code == 401  # the machine and its credential are gone
    assert env.machine(agent.vm_id) is None
    assert env.principal(machine.principal_id) is None
