"""``/downloads/agent/{version}/``: each published agent version as an agent bundle, for the
role to install a bare host from (docs/control-plane.md, "Downloads").

A version is served as the folder ``make wheelhouse`` builds (docs/agent-packages.md):
``targets.json`` and ``SHA256SUMS``, made from the store, and one archive per target. Like the
real agent's packages on Microsoft's download site, these files are public: they hold the
agent's open runtime and nothing of any tenant, and a host that installs one checks every file
against ``SHA256SUMS`` (fetched over this control plane's TLS) before it runs anything of it.
Only what the store lists is served, looked up by name in its table, never by a path the
request gives. ``GET /downloads/agent`` lists the published versions, oldest first.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from arc_controlplane.errors import ArmError
from arc_controlplane.http.context import Ctx
from arc_controlplane.machines import agent_packages
from arc_controlplane.machines.catalog import VERSION

BASE_PATH = "/downloads/agent"
FILE_NAME = rf"^(targets\.json|SHA256SUMS|{agent_packages.ARCHIVE.pattern.strip('^$')})$"

Version = Annotated[str, Path(max_length=64, pattern=VERSION.pattern)]
FileName = Annotated[str, Path(max_length=220, pattern=FILE_NAME)]


class AgentVersions(BaseModel):
    versions: list[str]
    """Oldest first."""


def _not_found(version: str, name: str = "") -> ArmError:
    what = f"{name} of agent {version}" if name else f"Agent {version}"
    return ArmError(
        404,
        "AgentPackageNotFound",
        f"{what} is not published here; 'arc-controlplane agent list' shows what is"
        " ('arc-controlplane agent publish BUNDLE' publishes a version).",
    )


def create_router() -> APIRouter:
    router = APIRouter(prefix=BASE_PATH, tags=["downloads"])

    @router.get("", response_model=AgentVersions, summary="The published agent versions")
    def list_versions(ctx: Ctx) -> AgentVersions:
        with ctx.db.session() as session:
            return AgentVersions(versions=agent_packages.versions(session))

    @router.get(
        "/{version}/{name}",
        summary="A file of a published agent version's bundle",
        response_class=Response,
        responses={404: {"description": "The version or the file is not published"}},
    )
    def get_file(version: Version, name: FileName, ctx: Ctx) -> Response:
        """``targets.json``, ``SHA256SUMS`` or an archive the bundle's ``targets.json`` names."""
        with ctx.db.session() as session:
            bundle = agent_packages.published_bundle(session, version)
        if bundle is None:
            raise _not_found(version)
        if name == "targets.json":
            return Response(bundle.targets_json, media_type="application/json")
        if name == "SHA256SUMS":
            return Response(bundle.sums, media_type="text/plain; charset=utf-8")
        row = bundle.archives.get(name)
        if row is None:
            raise _not_found(version, name)
        path = agent_packages.package_file(ctx.settings.packages_dir, row)
        return FileResponse(path, media_type="application/gzip", headers={"X-Content-SHA256": row.sha256})

    return router
