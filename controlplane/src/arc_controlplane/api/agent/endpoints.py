"""``GET /agent/v1/endpoints``: where each service of the control plane is (docs/endpoints.md).

No credentials: the agent reads it before it has any (``azcmagent connect``), as clients read
ARM's ``/metadata/endpoints``. Each value is a base URL; without ``--endpoint-domain`` they are
all the control plane's own URL.
"""

from __future__ import annotations

from fastapi import APIRouter

from arc_controlplane.api.agent.schema import EndpointsView
from arc_controlplane.api.agent.services import AgentServices
from arc_controlplane.http.context import Ctx


def create_router(_services: AgentServices) -> APIRouter:
    router = APIRouter()

    @router.get("/endpoints", response_model=EndpointsView, summary="Where each service is")
    def read_endpoints(ctx: Ctx) -> EndpointsView:
        return EndpointsView(**ctx.endpoints.document())

    return router
