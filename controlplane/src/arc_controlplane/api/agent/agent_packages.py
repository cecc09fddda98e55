"""The agent package routes of the agent API (docs/agent-protocol.md, 5.9; docs/agent-upgrade.md).

- ``GET /agentPackages?target=cp311-x86_64``: the published agent versions for a target, each
  with its SHA-256, size, signature and download URI;
- ``GET /agentPackages/{version}/{target}``: the archive itself.

Any machine may read them (a machine assertion; the ``sub`` claim names the machine); the agent
checks the archive's SHA-256 and signature before it stages it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse

from arc_controlplane.api.agent.schema import AgentPackageInfo, AgentPackageList
from arc_controlplane.api.agent.services import AgentCtx, AgentServices, error_responses
from arc_controlplane.endpoints import DOWNLOADS
from arc_controlplane.errors import ArmError
from arc_controlplane.machines import agent_packages
from arc_controlplane.machines.catalog import VERSION

Target = Annotated[str, Path(max_length=64, pattern=agent_packages.TARGET.pattern)]
Version = Annotated[str, Path(max_length=64, pattern=VERSION.pattern)]


def create_router(services: AgentServices) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/agentPackages",
        response_model=AgentPackageList,
        summary="The published agent versions for a target",
        responses=error_responses(400, 401),
    )
    def list_packages(
        request: Request,
        ctx: AgentCtx,
        target: Annotated[str, Query(max_length=64, pattern=agent_packages.TARGET.pattern)],
    ) -> AgentPackageList:
        """Oldest version first; check each archive's SHA-256 and signature before using it."""
        services.authenticate_any(request, ctx)
        with ctx.db.session() as session:
            rows = agent_packages.list_packages(session, target)
            return AgentPackageList(
                packages=[
                    AgentPackageInfo(
                        version=row.version,
                        target=row.target,
                        sha256=row.sha256,
                        size=row.size,
                        signature=row.signature,
                        uri=agent_packages.package_uri(ctx.url_for(DOWNLOADS, request), row),
                    )
                    for row in rows
                ]
            )

    @router.get(
        "/agentPackages/{version}/{target}",
        response_class=FileResponse,
        summary="Download a published agent package",
        responses=error_responses(401, 404),
    )
    def get_package(version: Version, target: Target, request: Request, ctx: AgentCtx) -> FileResponse:
        """The archive (a gzip tar of the agent runtime)."""
        services.authenticate_any(request, ctx)
        with ctx.db.session() as session:
            row = agent_packages.find(session, version, target)
            if row is None:
                raise ArmError(404, "AgentPackageNotFound", f"Agent {version} is not published for {target}.")
            path = agent_packages.package_file(ctx.settings.packages_dir, row)
            sha256 = row.sha256
        return FileResponse(path, media_type="application/gzip", headers={"X-Content-SHA256": sha256})

    return router
