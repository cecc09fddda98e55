"""Resource ids and names by ARM's rules (case-insensitive ids; name patterns per type)."""

from __future__ import annotations

import re
import uuid

from arc_controlplane.errors import ArmError

PROVIDER = "Microsoft.HybridCompute"
MACHINE_TYPE = "Microsoft.HybridCompute/machines"
GATEWAY_TYPE = "Microsoft.HybridCompute/gateways"
# S:Machine.tsp: machine names ^[a-zA-Z0-9-_\.]{1,54}$
MACHINE_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,54}$")
# Extension names: as machine names, up to 64 characters (the table's limit).
EXTENSION_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
# ARM: resource group names are 1-90 of letters, digits, _ ( ) - . and may not end in a period.
RESOURCE_GROUP_NAME = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")


def check_subscription_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ArmError(
            400,
            "InvalidSubscriptionId",
            f"The provided subscription identifier '{value}' is malformed or invalid.",
        ) from None


def check_resource_group_name(value: str) -> str:
    if not RESOURCE_GROUP_NAME.fullmatch(value):
        raise ArmError(
            400,
            "InvalidResourceGroup",
            f"The resource group name '{value}' is invalid: use 1-90 letters, digits, '_', '-', '.', "
            "'(' or ')', not ending in '.'.",
        )
    return value


def check_machine_name(value: str) -> str:
    """``value`` if it is a machine name by Azure's rules (S:Machine.tsp's pattern, and ARM's
    general rule that a resource name does not end in a period: so never ``.`` or ``..``,
    which HTTP clients would resolve as path segments and could then neither reach nor
    delete); else ARM's 400 ``InvalidResourceName``."""
    if not MACHINE_NAME.fullmatch(value) or value.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"The resource name '{value[:64]}' is invalid: use 1-54 letters, digits, '-', '_' or '.', "
            "not ending in '.'.",
        )
    return value


def check_extension_name(value: str) -> str:
    """``value`` if it is an extension name (as a machine name, up to 64 characters); else 400."""
    if not EXTENSION_NAME.fullmatch(value) or value.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"The extension name '{value[:64]}' is invalid: use 1-64 letters, digits, '-', '_' or '.', "
            "not ending in '.'.",
        )
    return value


def check_gateway_name(value: str) -> str:
    """``value`` if it is a gateway name (as an extension name: 1-64 characters); else 400."""
    if not EXTENSION_NAME.fullmatch(value) or value.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"The gateway name '{value[:64]}' is invalid: use 1-64 letters, digits, '-', '_' or '.', "
            "not ending in '.'.",
        )
    return value


ASSIGNMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")


def check_assignment_name(value: str) -> str:
    """``value`` if it is a guest configuration assignment name (up to 256 letters, digits, '.',
    '-' and '_', starting with a letter or digit); else 400."""
    if not ASSIGNMENT_NAME.fullmatch(value):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"The guest configuration assignment name '{value[:64]}' is invalid: use 1-256 letters, digits,"
            " '-', '_' or '.', starting with a letter or digit.",
        )
    return value


def subscription_scope(subscription_id: str) -> str:
    return f"/subscriptions/{subscription_id}"


def resource_group_id(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"


def machine_id(subscription_id: str, resource_group: str, name: str) -> str:
    return f"{resource_group_id(subscription_id, resource_group)}/providers/{MACHINE_TYPE}/{name}"


def gateway_id(subscription_id: str, resource_group: str, name: str) -> str:
    return f"{resource_group_id(subscription_id, resource_group)}/providers/{GATEWAY_TYPE}/{name}"
