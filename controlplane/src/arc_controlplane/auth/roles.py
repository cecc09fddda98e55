"""Built-in roles, the actions they allow, and scopes (subscription or resource group).

Role names and action strings follow Azure's built-in roles: "Azure Connected Machine
Onboarding" may create and read machines but not delete them (docs/reference/network.md); "Azure
Connected Machine Resource Administrator" may do everything on machines and their extensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

MACHINES_READ = "Microsoft.HybridCompute/machines/read"
MACHINES_WRITE = "Microsoft.HybridCompute/machines/write"
MACHINES_DELETE = "Microsoft.HybridCompute/machines/delete"
EXTENSIONS_READ = "Microsoft.HybridCompute/machines/extensions/read"
EXTENSIONS_WRITE = "Microsoft.HybridCompute/machines/extensions/write"
EXTENSIONS_DELETE = "Microsoft.HybridCompute/machines/extensions/delete"
GATEWAYS_READ = "Microsoft.HybridCompute/gateways/read"
GATEWAYS_WRITE = "Microsoft.HybridCompute/gateways/write"
GATEWAYS_DELETE = "Microsoft.HybridCompute/gateways/delete"
GATEWAYS_JOIN = "Microsoft.HybridCompute/gateways/join/action"
"""Linking a machine to a gateway (its settings/default) needs this at the gateway."""
SETTINGS_READ = "Microsoft.HybridCompute/settings/read"
SETTINGS_WRITE = "Microsoft.HybridCompute/settings/write"
RESOURCE_GROUPS_READ = "Microsoft.Resources/subscriptions/resourceGroups/read"
RESOURCE_GROUPS_WRITE = "Microsoft.Resources/subscriptions/resourceGroups/write"
RESOURCE_GROUPS_DELETE = "Microsoft.Resources/subscriptions/resourceGroups/delete"


@dataclass(frozen=True)
class Role:
    name: str
    aliases: tuple[str, ...]
    actions: tuple[str, ...]
    """Allowed actions; ``*`` matches any run of characters, as in Azure role definitions."""

    def allows(self, action: str) -> bool:
        action = action.lower()
        return any(fnmatchcase(action, pattern.lower()) for pattern in self.actions)


ROLES: tuple[Role, ...] = (
    Role("Owner", ("owner",), ("*",)),
    Role("Reader", ("reader",), ("*/read",)),
    Role(
        "Azure Connected Machine Onboarding",
        ("onboarding",),
        (
            MACHINES_READ,
            MACHINES_WRITE,
            RESOURCE_GROUPS_READ,
            "Microsoft.GuestConfiguration/*/read",
            GATEWAYS_READ,
            GATEWAYS_JOIN,
            SETTINGS_READ,
            SETTINGS_WRITE,
        ),
    ),
    Role(
        "Azure Connected Machine Resource Administrator",
        ("resource administrator", "resource-administrator"),
        (
            "Microsoft.HybridCompute/machines/*",
            RESOURCE_GROUPS_READ,
            "Microsoft.GuestConfiguration/*",
            "Microsoft.HybridCompute/gateways/*",
            "Microsoft.HybridCompute/settings/*",
        ),
    ),
)


def find_role(name: str) -> Role:
    """The role called ``name`` (or one of its short aliases), case-insensitively."""
    wanted = name.strip().lower()
    for role in ROLES:
        if wanted == role.name.lower() or wanted in role.aliases:
            return role
    known = ", ".join(f"'{r.name}'" for r in ROLES)
    raise ValueError(
        f"unknown role {name!r}; the roles are {known} (short names: onboarding, resource administrator)"
    )


def scope_covers(scope: str, resource_id: str) -> bool:
    """Whether an assignment at ``scope`` applies to ``resource_id`` (both case-insensitive)."""
    scope = scope.rstrip("/").lower()
    target = resource_id.rstrip("/").lower()
    return target == scope or target.startswith(scope + "/")
