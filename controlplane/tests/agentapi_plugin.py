"""The ``agent_api`` fixture, shared by the agent API test modules.

They load it with ``pytest_plugins = ["agentapi_plugin"]``: a session-scoped fixture has to live
in a plugin (or conftest) to be shared, and one server per database keeps the tests fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agentapi_env import DATABASES, AgentApiEnv, start_env


@pytest.fixture(scope="session", params=DATABASES)
def agent_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentApiEnv]:
    """One server per database for all agent API tests (each test makes machines of its own)."""
    yield from start_env(request.param, tmp_path_factory.mktemp(f"agentapi-{request.param}"), request)
