"""Arc gateways (``Microsoft.HybridCompute/gateways``) and the machines' link to one (their
``Microsoft.HybridCompute/settings/default``), docs/gateway.md.

A gateway is a forward proxy run by the control plane's deployment (``arc-controlplane serve
--gateway-port``): the Arc proxy on a linked machine opens TLS to it and asks, in that
session, for a tunnel (``CONNECT host:port``) to each endpoint its services need, naming the
gateway by ``gatewayId``. :func:`admit` decides each such request: only the control plane's
own endpoints, and only for a gateway that exists; everything else is refused with a status
and a reason the Arc proxy passes on.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arc_controlplane.db.tables import Gateway, Machine, Subscription
from arc_controlplane.errors import ArmError
from arc_controlplane.machines.work import bump
from arc_controlplane.resource_ids import GATEWAY_TYPE, gateway_id

SETTINGS_TYPE = "Microsoft.HybridCompute/settings"
SETTINGS_NAME = "default"
GATEWAY_TYPES = ("Public",)
FEATURES = ("*",)
"""``allowedFeatures``: Azure defines only ``*`` (every endpoint the Arc agent and its
extensions need); it is the default."""
MAX_GATEWAYS_PER_SUBSCRIPTION = 5
"""Azure's limit (docs/reference/network.md)."""
MAX_BYPASS = 64
_BYPASS_ENTRY = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$"
)


def _invalid(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)


def check_features(features: list[str] | None) -> list[str]:
    """``allowedFeatures`` as stored (``["*"]`` when not given); 400 naming an unknown one."""
    if features is None:
        return list(FEATURES)
    for feature in features:
        if feature not in FEATURES:
            raise _invalid(
                "InvalidAllowedFeatures",
                f"properties.allowedFeatures: '{feature[:64]}' is not a feature of Arc gateways; the only"
                " one is '*' (every endpoint the agent and its extensions need).",
            )
    return sorted(set(features))


def check_bypass(entries: list[str] | None) -> list[str]:
    """``gatewayBypass``: host names (``*.domain`` for a whole domain) the Arc proxy reaches
    without the gateway; 400 naming a malformed one."""
    if entries is None:
        return []
    if len(entries) > MAX_BYPASS:
        raise _invalid("InvalidGatewayBypass", f"properties.gatewayBypass: at most {MAX_BYPASS} entries.")
    for entry in entries:
        if len(entry) > 253 or not _BYPASS_ENTRY.fullmatch(entry):
            raise _invalid(
                "InvalidGatewayBypass",
                f"properties.gatewayBypass: '{entry[:64]}' is not a host name (or *.domain).",
            )
    return [entry.lower() for entry in entries]


def check_type(gateway_type: str | None) -> str:
    if gateway_type is None:
        return GATEWAY_TYPES[0]
    for known in GATEWAY_TYPES:
        if gateway_type.lower() == known.lower():
            return known
    raise _invalid(
        "InvalidGatewayType",
        f"properties.gatewayType '{gateway_type[:64]}' is not one of {', '.join(GATEWAY_TYPES)}.",
    )


def not_found(group: str, name: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{GATEWAY_TYPE}/{name}' under resource group '{group}' was not found.",
    )


def find_gateway(
    session: Session, subscription_id: str, group: str, name: str, *, for_update: bool = False
) -> Gateway | None:
    query = select(Gateway).where(
        Gateway.subscription_id == subscription_id,
        Gateway.resource_group_lower == group.lower(),
        Gateway.name_lower == name.lower(),
    )
    return session.scalars(query.with_for_update() if for_update else query).first()


def list_gateways(session: Session, subscription_id: str, group: str | None = None) -> list[Gateway]:
    query = select(Gateway).where(Gateway.subscription_id == subscription_id)
    if group is not None:
        query = query.where(Gateway.resource_group_lower == group.lower())
    return list(session.scalars(query.order_by(Gateway.id)))


@dataclass(frozen=True)
class GatewayRequest:
    location: str
    tags: dict[str, str] | None
    gateway_type: str | None
    allowed_features: list[str] | None
    gateway_bypass: list[str] | None


@dataclass(frozen=True)
class Put:
    gateway: Gateway
    created: bool


def put_gateway(
    session: Session, subscription_id: str, group: str, name: str, wanted: GatewayRequest, now: dt.datetime
) -> Put:
    """Create or replace the gateway (its ``gatewayId`` stays); 400 naming a bad property, 409
    past Azure's five gateways per subscription."""
    gateway_type = check_type(wanted.gateway_type)
    features = check_features(wanted.allowed_features)
    bypass = check_bypass(wanted.gateway_bypass)
    existing = find_gateway(session, subscription_id, group, name, for_update=True)
    if existing is None:
        count = session.scalar(
            select(func.count()).select_from(Gateway).where(Gateway.subscription_id == subscription_id)
        )
        if (count or 0) >= MAX_GATEWAYS_PER_SUBSCRIPTION:
            raise ArmError(
                409,
                "GatewayLimitExceeded",
                f"The subscription has {count} Arc gateways, the most it may have"
                f" ({MAX_GATEWAYS_PER_SUBSCRIPTION}); delete one it no longer uses first.",
            )
        resource_id = gateway_id(subscription_id, group, name)
        existing = Gateway(
            resource_id=resource_id,
            resource_id_lower=resource_id.lower(),
            subscription_id=subscription_id,
            resource_group_lower=group.lower(),
            name=name,
            name_lower=name.lower(),
            location=wanted.location,
            tags=dict(wanted.tags or {}),
            gateway_id=str(uuid.uuid4()),
            gateway_type=gateway_type,
            allowed_features=features,
            gateway_bypass=bypass,
            provisioning_state="Succeeded",
            created_at=now,
            updated_at=now,
        )
        session.add(existing)
        return Put(existing, created=True)
    if wanted.location.lower() != existing.location.lower():
        raise ArmError(
            409,
            "InvalidResourceLocation",
            f"The gateway '{name}' already exists in location {existing.location}; a gateway cannot move"
            f" to {wanted.location}.",
        )
    existing.tags = dict(wanted.tags or {})
    existing.gateway_type = gateway_type
    existing.allowed_features = features
    existing.gateway_bypass = bypass
    existing.updated_at = now
    return Put(existing, created=False)


def update_gateway(
    gateway: Gateway,
    tags: dict[str, str] | None,
    allowed_features: list[str] | None,
    gateway_bypass: list[str] | None,
    now: dt.datetime,
) -> None:
    """Gateways_Update (PATCH): what the body carries, the rest as it was."""
    if tags is not None:
        gateway.tags = dict(tags)
    if allowed_features is not None:
        gateway.allowed_features = check_features(allowed_features)
    if gateway_bypass is not None:
        gateway.gateway_bypass = check_bypass(gateway_bypass)
    gateway.updated_at = now


def machines_using(session: Session, gateway: Gateway) -> list[Machine]:
    return list(session.scalars(select(Machine).where(Machine.gateway_id == gateway.id).order_by(Machine.id)))


def delete_gateway(session: Session, gateway: Gateway) -> None:
    """Delete it; 409 naming the machines that still use it (their agents would lose their
    only way out)."""
    users = machines_using(session, gateway)
    if users:
        shown = ", ".join(m.name for m in users[:5]) + (
            f" and {len(users) - 5} more" if len(users) > 5 else ""
        )
        raise ArmError(
            409,
            "GatewayInUse",
            f"The gateway '{gateway.name}' is used by {len(users)} machine(s) ({shown}): link them to another"
            " gateway or to none (their settings/default) first, then delete it.",
        )
    session.delete(gateway)


def gateway_view(gateway: Gateway, endpoint: str | None) -> dict[str, Any]:
    """The gateway in Azure's shape (``Gateway``)."""
    properties: dict[str, Any] = {
        "provisioningState": gateway.provisioning_state,
        "gatewayId": gateway.gateway_id,
        "gatewayType": gateway.gateway_type,
        "allowedFeatures": list(gateway.allowed_features),
        "gatewayBypass": list(gateway.gateway_bypass),
    }
    if endpoint:
        properties["gatewayEndpoint"] = endpoint
    return {
        "id": gateway.resource_id,
        "name": gateway.name,
        "type": GATEWAY_TYPE,
        "location": gateway.location,
        "tags": dict(gateway.tags or {}),
        "properties": properties,
    }


def settings_id(machine: Machine) -> str:
    return f"{machine.resource_id}/providers/{SETTINGS_TYPE}/{SETTINGS_NAME}"


def machine_gateway(session: Session, machine: Machine) -> Gateway | None:
    return None if machine.gateway_id is None else session.get(Gateway, machine.gateway_id)


def settings_view(machine: Machine, gateway: Gateway | None) -> dict[str, Any]:
    """The machine's ``settings/default`` (``Settings``)."""
    link = {} if gateway is None else {"gatewayResourceId": gateway.resource_id}
    return {
        "id": settings_id(machine),
        "name": SETTINGS_NAME,
        "type": SETTINGS_TYPE,
        "properties": {"tenantId": machine.tenant_id, "gatewayProperties": link},
    }


def resolve_link(session: Session, machine: Machine, resource_id: str | None) -> Gateway | None:
    """The gateway ``resource_id`` names (None for none): it must exist, in a subscription of the
    machine's tenant. 400 naming the problem otherwise."""
    if not resource_id:
        return None
    gateway = session.scalars(select(Gateway).where(Gateway.resource_id_lower == resource_id.lower())).first()
    if gateway is None:
        raise _invalid(
            "GatewayNotFound",
            f"properties.gatewayProperties.gatewayResourceId: there is no Arc gateway {resource_id[:300]};"
            " create it first (Microsoft.HybridCompute/gateways) or give the id of one that exists.",
        )
    subscription = session.get(Subscription, gateway.subscription_id)
    if subscription is None or subscription.tenant_id != machine.tenant_id:
        raise _invalid(
            "GatewayNotFound",
            f"The Arc gateway {resource_id[:300]} is not in the machine's tenant: a machine can only use a"
            " gateway of its own tenant.",
        )
    return gateway


def link(machine: Machine, gateway: Gateway | None) -> bool:
    """Point the machine at ``gateway`` (or none); True when that changed (the caller wakes the
    agent, which switches its services to the Arc proxy or back)."""
    wanted = None if gateway is None else gateway.id
    if machine.gateway_id == wanted:
        return False
    machine.gateway_id = wanted
    bump(machine)  # the agent itself (himds) reads its gateway
    return True


def agent_gateway(gateway: Gateway | None, endpoint: str | None) -> dict[str, Any] | None:
    """What the agent needs to send its traffic through the gateway (its goal state)."""
    if gateway is None:
        return None
    return {
        "id": gateway.resource_id,
        "gatewayId": gateway.gateway_id,
        "endpoint": endpoint,
        "bypass": list(gateway.gateway_bypass),
    }


# --- the gateway service's decisions ------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """A tunnel request's answer: ``status`` 200 to open it, else the refusal and its reason."""

    status: HTTPStatus
    reason: str
    target: tuple[str, int] | None = None
    """Where the tunnel goes (the control plane's own listener for its endpoints)."""

    @property
    def allowed(self) -> bool:
        return self.status == HTTPStatus.OK


_GATEWAY_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parse_authority(authority: str) -> tuple[str, int] | None:
    """``host:port`` of a CONNECT request (``[v6]:port`` too); None if it is not one."""
    host, sep, port = authority.rpartition(":")
    if not sep or not port.isdigit() or not host or len(authority) > 300:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if not 0 < number < 65536:
        return None
    return host.lower(), number


def admit(
    method: str,
    authority: str,
    named_gateway: str | None,
    gateway: Gateway | None,
    endpoints: Collection[tuple[str, int]],
    upstream: tuple[str, int],
) -> Admission:
    """The gateway's answer to one request. ``named_gateway``: the ``Arc-Gateway-Id`` header;
    ``gateway``: that gateway, if it exists; ``endpoints``: the (host, port) pairs under which
    the control plane is served; ``upstream``: where its listener is."""
    if method.upper() != "CONNECT":
        return Admission(
            HTTPStatus.METHOD_NOT_ALLOWED, "the Arc gateway only opens tunnels (CONNECT host:port)"
        )
    target = parse_authority(authority)
    if target is None:
        return Admission(HTTPStatus.BAD_REQUEST, "CONNECT needs host:port")
    if not named_gateway or not _GATEWAY_ID.fullmatch(named_gateway):
        return Admission(
            HTTPStatus.FORBIDDEN, "the request names no gateway (Arc-Gateway-Id: the gateway's gatewayId)"
        )
    if gateway is None:
        return Admission(HTTPStatus.FORBIDDEN, f"there is no Arc gateway {named_gateway.lower()}")
    shown = f"{target[0]}:{target[1]}"
    if target not in {(host.lower(), port) for host, port in endpoints}:
        return Admission(
            HTTPStatus.FORBIDDEN,
            f"the gateway {gateway.name} does not allow {shown}: it admits only the Arc endpoints"
            f" (allowedFeatures {', '.join(gateway.allowed_features) or 'none'})",
        )
    if "*" not in gateway.allowed_features:
        return Admission(
            HTTPStatus.FORBIDDEN,
            f"the gateway {gateway.name} allows no features (allowedFeatures is empty), so not {shown}",
        )
    return Admission(HTTPStatus.OK, "Connection established", upstream)
