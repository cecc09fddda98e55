"""The agent-facing API under ``/agent/v1`` (ours; the contract is docs/agent-protocol.md).

Registration and disconnection are authenticated by a principal's access token; every other
call by an assertion signed with the machine's own key (``assertions.py``).
"""

from __future__ import annotations

from fastapi import APIRouter

from arc_controlplane.api.agent import (
    agent_packages,
    credential,
    disconnect,
    endpoints,
    extensions,
    guest_configuration,
    heartbeat,
    machine,
    notifications,
    register,
    tokens,
)
from arc_controlplane.api.agent.services import BASE_PATH, AgentServices


def create_router(services: AgentServices, heartbeats: heartbeat.Heartbeats) -> APIRouter:
    """The agent API's routes over ``services`` (one per application; the caller closes it)."""
    router = APIRouter(prefix=BASE_PATH, tags=["agent"])
    for module in (
        endpoints,
        register,
        credential,
        notifications,
        tokens,
        machine,
        extensions,
        agent_packages,
        guest_configuration,
    ):
        router.include_router(module.create_router(services))
    router.include_router(heartbeat.create_router(heartbeats))
    router.include_router(disconnect.create_router())
    return router
