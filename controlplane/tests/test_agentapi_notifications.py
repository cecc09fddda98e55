"""Agent API, notifications by long-poll, on both databases."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentapi_env import AgentApiEnv, start_env

pytest_plugins = ["agentapi_plugin"]  # the agent_api fixture: one server per database


def test_a_higher_generation_is_answered_at_once(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    agent_api.update_machine(agent.vm_id, generation=3)
    started = time.monotonic()
    reply = agent.notifications(generation=1, wait=60)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"generation": 3}
    assert time.monotonic() - started < 2


def test_nothing_new_is_204_when_the_wait_is_over(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    started = time.monotonic()
    reply = agent.notifications(generation=0, wait=1)
    elapsed = time.monotonic() - started
    assert reply.status_code == 204
    assert reply.content == b""
    assert 1 <= elapsed < 3


def test_a_change_made_in_the_database_wakes_the_poll_within_five_seconds(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    replies: list[httpx.Response] = []
    poll = threading.Thread(target=lambda: replies.append(agent.notifications(generation=0, wait=30)))
    started = time.monotonic()
    poll.start()
    time.sleep(0.3)
    assert poll.is_alive()
    agent_api.update_machine(agent.vm_id, generation=1)  # as another server process would
    poll.join(timeout=10)
    elapsed = time.monotonic() - started
    assert not poll.is_alive()
    assert replies[0].status_code == 200
    assert replies[0].json() == {"generation": 1}
    assert elapsed < 6.5


def test_a_machine_deleted_while_polling_ends_the_poll(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    replies: list[httpx.Response] = []
    poll = threading.Thread(target=lambda: replies.append(agent.notifications(generation=0, wait=30)))
    poll.start()
    time.sleep(0.3)
    admin = agent_api.principal_token("Resource Administrator")
    reply = agent_api.http.delete(
        f"/agent/v1/machines/{agent.vm_id}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert reply.status_code == 200
    poll.join(timeout=5)  # the disconnect wakes the poll at once (same process)
    assert not poll.is_alive()
    assert replies[0].status_code == 401
    assert replies[0].json()["error"]["code"] == "InvalidAssertion"


@pytest.mark.parametrize(
    "params",
    [{"generation": 0, "wait": 0}, {"generation": 0, "wait": 121}, {"wait": 5}, {"generation": -1}],
)
def test_bad_parameters_are_400(agent_api: AgentApiEnv, params: dict[str, Any]) -> None:
    agent = agent_api.connected_agent()
    reply = agent_api.http.get(
        f"/agent/v1/machines/{agent.vm_id}/notifications", params=params, headers=agent.headers()
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "InvalidRequestContent"


def test_polls_need_a_valid_assertion(agent_api: AgentApiEnv) -> None:
    agent = agent_api.connected_agent()
    reply = agent_api.http.get(
        f"/agent/v1/machines/{agent.vm_id}/notifications",
        params={"generation": 0},
        headers=agent.headers(audience="https://elsewhere/agent"),
    )
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "InvalidAssertion"


def test_stopping_the_server_ends_polls_at_once(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # A server of its own, since it is stopped. The path never reaches the database, so SQLite
    # alone covers it.
    env_iterator = start_env("sqlite", tmp_path, request)
    env = next(env_iterator)
    agent = env.connected_agent()
    answered: list[tuple[float, int]] = []

    def poll() -> None:
        reply = agent.notifications(generation=0, wait=60)
        answered.append((time.monotonic(), reply.status_code))

    polling = threading.Thread(target=poll)
    polling.start()
    time.sleep(0.5)
    stopped = time.monotonic()
    env.server.process.send_signal(signal.SIGTERM)
    polling.join(timeout=10)
    assert answered, "the poll did not end"
    when, status = answered[0]
    assert status == 204
    assert when - stopped < 2  # not held until the graceful shutdown times out
    env.http.close()  # an idle keep-alive connection would hold the shutdown for its whole timeout
    assert env.server.process.wait(timeout=15) == 0
    next(env_iterator, None)  # stops what is left and checks the log has no traceback
