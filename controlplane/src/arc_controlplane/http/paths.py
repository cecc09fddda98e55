"""Case-insensitive ARM paths: one canonical spelling of the fixed segments before routing.

ARM resource ids are case-insensitive: ``/SUBSCRIPTIONS/{id}/resourcegroups/{rg}/PROVIDERS/
microsoft.hybridcompute/Machines/{name}`` names the same machine as the canonical
``/subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.HybridCompute/machines/{name}``.
Routes are declared in the canonical spelling only; :class:`ArmPathMiddleware` rewrites the
fixed segments (``subscriptions``, ``resourceGroups``, ``providers``, the provider namespace and
the resource type words) of every ARM path to that spelling and leaves names as they were
given. Lookups then compare names case-insensitively (the ``*_lower`` columns).

The walk is positional, so a machine called ``machines`` keeps its name::

    /subscriptions/{sub}[/resourceGroups/{rg}]/providers/{Namespace}/{type}/{name}/{type}/{name}...

and a nested ``/providers/{Namespace}/...`` may follow any name (extension resources).

Empty segments are dropped first, as Azure does: ``az resource show -g RG -n NAME
--resource-type Microsoft.HybridCompute/machines`` asks for ``.../Microsoft.HybridCompute//machines/
NAME``, and ``az cloud register`` with a Resource Manager URL ending in ``/`` asks for
``//metadata/endpoints``.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

NAMESPACES = {
    name.lower(): name
    for name in ("Microsoft.HybridCompute", "Microsoft.GuestConfiguration", "Microsoft.Resources")
}
"""Provider namespaces in their canonical spelling."""

TYPE_WORDS = {
    word.lower(): word
    for word in (
        "machines",
        "extensions",
        "locations",
        "operationStatus",
        "operationResults",
        "guestConfigurationAssignments",
        "reports",
        "licenseProfiles",
        "runCommands",
        "settings",
        "publishers",
        "extensionTypes",
        "versions",
        "privateLinkScopes",
        "gateways",
        "networkProfile",
        "assessPatches",
        "installPatches",
        "upgradeExtensions",
        "addExtensions",
    )
}
"""Resource type and action words (the segments between names) in their canonical spelling."""

_PREFIXES = ("/subscriptions", "/providers")
_EMPTY_SEGMENTS = re.compile("/{2,}")


def canonical_path(path: str) -> str:
    """``path`` without empty segments, and with the fixed segments of an ARM path in canonical
    spelling; other segments as they are."""
    if "//" in path:
        path = _EMPTY_SEGMENTS.sub("/", path)
    if not path[:14].lower().startswith(_PREFIXES):
        return path
    segments = path.split("/")
    first = segments[1].lower()
    if first == "subscriptions":
        segments[1] = "subscriptions"
        index = 3  # segments[2] is the subscription id
        if len(segments) > index and segments[index].lower() == "resourcegroups":
            segments[index] = "resourceGroups"
            index = 5  # segments[4] is the group's name
    elif first == "providers":
        index = 1
    else:  # e.g. /subscriptionsX
        return path
    _canonical_provider_part(segments, index)
    return "/".join(segments)


def _canonical_provider_part(segments: list[str], index: int) -> None:
    """Rewrite ``providers/{Namespace}/{type}/{name}/...`` from ``segments[index]`` on, in place."""
    while index < len(segments) and segments[index].lower() == "providers":
        segments[index] = "providers"
        if index + 1 < len(segments):
            namespace = segments[index + 1]
            segments[index + 1] = NAMESPACES.get(namespace.lower(), namespace)
        index += 2
        while index < len(segments) and segments[index].lower() != "providers":
            word = segments[index]
            segments[index] = TYPE_WORDS.get(word.lower(), word)
            index += 2  # skip the name that follows the type


class ArmPathMiddleware:
    """Pure ASGI middleware: canonical ARM paths before routing (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            canonical = canonical_path(path)
            if canonical != path:
                scope["path"] = canonical
                raw_path = scope.get("raw_path")
                if isinstance(raw_path, bytes):
                    scope["raw_path"] = canonical_path(raw_path.decode("latin-1")).encode("latin-1")
        await self.app(scope, receive, send)
