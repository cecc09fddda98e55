"""``serve --heartbeat-interval 5``: agents are told 5 s, a machine silent for three intervals
(15 s) reads Disconnected through the ARM API, a clone is told to retry after 5 s, and another
host may take the machine over once it is Disconnected; on both databases.

Silence is simulated by moving the stored last heartbeat back, except in the test that watches
a machine turn Disconnected in real time.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from agentapi_env import DATABASES, AgentApiEnv, new_name, start_env, utcnow

from arc_controlplane.clock import iso8601

INTERVAL = 5
HC = "2026-09-01"


@pytest.fixture(scope="module", params=DATABASES)
def fast(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentApiEnv]:
    base = tmp_path_factory.mktemp(f"interval-{request.param}")
    yield from start_env(request.param, base, request, heartbeat_interval=INTERVAL)


def get_machine(env: AgentApiEnv, name: str) -> dict[str, Any]:
    """Machines_Get by a Reader, as a user (or the Azure SDK) would read the machine."""
    reply = env.http.get(
        env.machine_id(name),
        params={"api-version": HC},
        headers={"Authorization": f"Bearer {env.principal_token('Reader')}"},
    )
    assert reply.status_code == 200, reply.text
    properties: dict[str, Any] = reply.json()["properties"]
    return properties


def chunked(body: dict[str, Any]) -> Iterator[bytes]:
    """A body without Content-Length: such a heartbeat is answered by the framework's route."""
    yield json.dumps(body).encode()


def framework_heartbeat(
    env: AgentApiEnv, vm_id: str, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    return env.http.post(
        f"/agent/v1/machines/{vm_id}/heartbeat",
        content=chunked(body),
        headers={**headers, "Content-Type": "application/json"},
    )


def test_register_and_heartbeats_answer_the_configured_interval(fast: AgentApiEnv) -> None:
    assert fast.timing.disconnected_after == dt.timedelta(seconds=3 * INTERVAL)
    agent = fast.agent()
    reply = agent.register(fast.onboarding_token(), fast.registration(agent, new_name()))
    assert reply.status_code == 201, reply.text
    assert reply.json()["heartbeatIntervalSeconds"] == INTERVAL

    expected = {"heartbeatIntervalSeconds": INTERVAL, "renewCredential": False, "generation": 0}
    reply = agent.heartbeat()  # the fast path
    assert reply.status_code == 200, reply.text
    assert reply.json() == expected
    body = {"hostId": agent.host_id, "agentVersion": "1.50.0"}
    reply = framework_heartbeat(fast, agent.vm_id, body, agent.headers())
    assert reply.status_code == 200, reply.text
    assert reply.json() == expected


def test_three_silent_intervals_read_disconnected_through_arm(fast: AgentApiEnv) -> None:
    silent_name, alive_name = new_name(), new_name()
    silent = fast.connected_agent(silent_name)
    alive = fast.connected_agent(alive_name)
    now = utcnow()
    last = now - dt.timedelta(seconds=16)
    # As if the agent registered, heartbeated and then went silent 16 s ago.
    fast.update_machine(silent.vm_id, last_heartbeat=last, last_status_change=last)
    fast.update_machine(alive.vm_id, last_heartbeat=now - dt.timedelta(seconds=4))

    seen = get_machine(fast, silent_name)
    assert (seen["status"], seen["statusReason"]) == ("Disconnected", None)
    assert seen["lastStatusChange"] == iso8601(last + dt.timedelta(seconds=3 * INTERVAL))
    assert get_machine(fast, alive_name)["status"] == "Connected"

    before = utcnow()
    assert silent.heartbeat().status_code == 200
    healed = get_machine(fast, silent_name)
    assert healed["status"] == "Connected"
    assert dt.datetime.fromisoformat(healed["lastStatusChange"]) >= before


def test_a_machine_turns_disconnected_in_real_time(fast: AgentApiEnv) -> None:
    """No job marks machines: the status is derived when read, so the clock alone turns it."""
    name = new_name()
    agent = fast.connected_agent(name)
    threshold = dt.timedelta(seconds=3 * INTERVAL)
    last = utcnow() - threshold + dt.timedelta(seconds=2)  # two seconds of life left
    fast.update_machine(agent.vm_id, last_heartbeat=last)
    assert get_machine(fast, name)["status"] == "Connected"
    wait = (last + threshold - utcnow()).total_seconds() + 0.2
    time.sleep(max(wait, 0))
    seen = get_machine(fast, name)
    assert seen["status"] == "Disconnected"
    assert seen["lastStatusChange"] == iso8601(last + threshold)


def test_a_clone_is_told_to_retry_after_the_interval(fast: AgentApiEnv) -> None:
    original = fast.connected_agent()
    clone = fast.agent(host_id=f"clone-{uuid.uuid4().hex}")
    clone.key, clone.vm_id = original.key, original.vm_id
    reply = clone.heartbeat()
    assert reply.status_code == 429, reply.text
    assert reply.headers["retry-after"] == str(INTERVAL)
    body = {"hostId": clone.host_id, "agentVersion": "1.50.0"}
    reply = framework_heartbeat(fast, clone.vm_id, body, clone.headers())
    assert reply.status_code == 429, reply.text
    assert reply.headers["retry-after"] == str(INTERVAL)
    assert clone.renew().headers["retry-after"] == str(INTERVAL)


def test_another_host_may_take_over_once_three_intervals_passed(fast: AgentApiEnv) -> None:
    name = new_name()
    first = fast.connected_agent(name)
    fast.update_machine(first.vm_id, last_heartbeat=utcnow() - dt.timedelta(seconds=4))
    newcomer = fast.agent()
    reply = newcomer.register(fast.onboarding_token(), fast.registration(newcomer, name))
    assert reply.status_code == 409, reply.text
    assert "wait until it shows Disconnected (15 s without a heartbeat)" in reply.json()["error"]["message"]

    fast.update_machine(first.vm_id, last_heartbeat=utcnow() - dt.timedelta(seconds=16))
    reply = newcomer.register(fast.onboarding_token(), fast.registration(newcomer, name))
    assert reply.status_code == 200, reply.text
    assert reply.json()["vmId"] == first.vm_id
    assert reply.json()["heartbeatIntervalSeconds"] == INTERVAL
