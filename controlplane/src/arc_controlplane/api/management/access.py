"""Who may do what on which resource: the checks every management route runs, as one FastAPI
dependency (a ``Checks`` instance), in ARM's order:

1. the ids in the path are well-formed (400 ``InvalidSubscriptionId``, ``InvalidResourceGroup``,
   ``InvalidResourceName``...);
2. a change is marked for the audit log (so that the outcome of every later step is logged,
   refusals included);
3. the bearer token is valid (401);
4. ``api-version`` is present and supported (400);
5. the subscription exists (404 ``SubscriptionNotFound``) and belongs to the caller's tenant
   (401 ``InvalidAuthenticationTokenTenant``);
6. the caller's roles allow the action at the resource (403 ``AuthorizationFailed``).

List routes skip step 6 and filter by :func:`visibility` instead: a caller sees what it may
read, and gets 403 only when it may read nothing there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Generic, Protocol, TypeVar

from fastapi import Depends, Request
from sqlalchemy import ColumnElement, or_, true

from arc_controlplane.api.management.lookups import find_subscription
from arc_controlplane.db.tables import Machine, ResourceGroup
from arc_controlplane.errors import ArmError
from arc_controlplane.http.audit import audit
from arc_controlplane.http.caller import Caller, authenticate
from arc_controlplane.http.context import AppContext, Ctx
from arc_controlplane.http.locations import check_location
from arc_controlplane.http.versions import ApiVersionParameter, ApiVersions
from arc_controlplane.resource_ids import (
    PROVIDER,
    check_assignment_name,
    check_extension_name,
    check_gateway_name,
    check_machine_name,
    check_resource_group_name,
    check_subscription_id,
    gateway_id,
    machine_id,
    resource_group_id,
    subscription_scope,
)

GUEST_CONFIGURATION_TYPE = "Microsoft.GuestConfiguration/guestConfigurationAssignments"
_OPERATION_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Ref(Protocol):
    @property
    def subscription_id(self) -> str: ...

    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=Ref)


@dataclass(frozen=True)
class SubscriptionRef:
    subscription_id: str

    @property
    def id(self) -> str:
        return subscription_scope(self.subscription_id)


@dataclass(frozen=True)
class GroupRef:
    subscription_id: str
    resource_group: str

    @property
    def id(self) -> str:
        return resource_group_id(self.subscription_id, self.resource_group)


@dataclass(frozen=True)
class MachineRef:
    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return machine_id(self.subscription_id, self.resource_group, self.name)


@dataclass(frozen=True)
class GatewayRef:
    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return gateway_id(self.subscription_id, self.resource_group, self.name)


@dataclass(frozen=True)
class ExtensionRef:
    subscription_id: str
    resource_group: str
    machine: str
    name: str

    @property
    def machine_ref(self) -> MachineRef:
        return MachineRef(self.subscription_id, self.resource_group, self.machine)

    @property
    def id(self) -> str:
        return f"{self.machine_ref.id}/extensions/{self.name}"


@dataclass(frozen=True)
class AssignmentRef:
    """A guest configuration assignment on a machine (an extension resource of the machine)."""

    subscription_id: str
    resource_group: str
    machine: str
    name: str

    @property
    def machine_ref(self) -> MachineRef:
        return MachineRef(self.subscription_id, self.resource_group, self.machine)

    @property
    def id(self) -> str:
        return f"{self.machine_ref.id}/providers/{GUEST_CONFIGURATION_TYPE}/{self.name}"


@dataclass(frozen=True)
class OperationRef:
    subscription_id: str
    location: str
    operation_id: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/providers/{PROVIDER}/locations/{self.location}"
            f"/operationStatus/{self.operation_id}"
        )


def subscription_ref(subscription_id: str) -> SubscriptionRef:
    return SubscriptionRef(check_subscription_id(subscription_id))


def group_ref(subscription_id: str, resource_group_name: str) -> GroupRef:
    return GroupRef(check_subscription_id(subscription_id), check_resource_group_name(resource_group_name))


def machine_ref(subscription_id: str, resource_group_name: str, machine_name: str) -> MachineRef:
    return MachineRef(
        check_subscription_id(subscription_id),
        check_resource_group_name(resource_group_name),
        check_machine_name(machine_name),
    )


def gateway_ref(subscription_id: str, resource_group_name: str, gateway_name: str) -> GatewayRef:
    return GatewayRef(
        check_subscription_id(subscription_id),
        check_resource_group_name(resource_group_name),
        check_gateway_name(gateway_name),
    )


def extension_ref(
    subscription_id: str, resource_group_name: str, machine_name: str, extension_name: str
) -> ExtensionRef:
    machine = machine_ref(subscription_id, resource_group_name, machine_name)
    return ExtensionRef(
        machine.subscription_id, machine.resource_group, machine.name, check_extension_name(extension_name)
    )


def assignment_ref(
    subscription_id: str,
    resource_group_name: str,
    machine_name: str,
    guest_configuration_assignment_name: str,
) -> AssignmentRef:
    machine = machine_ref(subscription_id, resource_group_name, machine_name)
    return AssignmentRef(
        machine.subscription_id,
        machine.resource_group,
        machine.name,
        check_assignment_name(guest_configuration_assignment_name),
    )


def operation_ref(subscription_id: str, location: str, operation_id: str) -> OperationRef:
    if not _OPERATION_ID.fullmatch(operation_id):
        shown = operation_id if len(operation_id) <= 64 else operation_id[:64] + "..."
        raise ArmError(400, "InvalidOperationId", f"The operation id '{shown}' is not a GUID.")
    return OperationRef(
        check_subscription_id(subscription_id), check_location(location), operation_id.lower()
    )


@dataclass(frozen=True)
class SubscriptionInfo:
    id: str
    """As stored (lower-case GUID)."""
    tenant_id: str


@dataclass(frozen=True)
class Access(Generic[R]):
    """A request that passed the checks: what it is about, who asks, in which subscription."""

    ref: R
    caller: Caller
    subscription: SubscriptionInfo
    api_version: str


def load_subscription(ctx: AppContext, subscription_id: str, caller: Caller) -> SubscriptionInfo:
    with ctx.db.session() as session:
        row = find_subscription(session, subscription_id)
        info = None if row is None else SubscriptionInfo(row.id, row.tenant_id)
    if info is None:
        raise ArmError(
            404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found."
        )
    if info.tenant_id != caller.tenant_id:
        raise ArmError(
            401,
            "InvalidAuthenticationTokenTenant",
            f"The access token is from tenant '{caller.tenant_id}', but subscription "
            f"'{subscription_id}' belongs to tenant '{info.tenant_id}': get a token from "
            f"{ctx.tokens.public_url}/{info.tenant_id}/oauth2/v2.0/token.",
            headers={"WWW-Authenticate": 'Bearer authorization_uri="", error="invalid_token"'},
        )
    return info


class Checks(Generic[R]):
    """The checks of the module's docstring for one kind of route; subclasses read the ids.

    ``action`` is the role action required at the resource (None for lists, which filter
    instead); ``change`` marks the request for the audit log under ``action``.
    """

    def __init__(self, versions: ApiVersions, action: str | None, *, change: bool = False) -> None:
        if change and action is None:
            raise ValueError("a change needs an action to audit")
        self.versions = versions
        self.action = action
        self.change = change

    def check(self, request: Request, ref: R, api_version: str | None, ctx: AppContext) -> Access[R]:
        if self.change and self.action is not None:
            audit(request, self.action, ref.id)
        caller = authenticate(request, ctx)
        version = self.versions.check(api_version)
        subscription = load_subscription(ctx, ref.subscription_id, caller)
        if self.action is not None:
            caller.require(self.action, ref.id)
        return Access(ref, caller, subscription, version)


class SubscriptionChecks(Checks[SubscriptionRef]):
    def __call__(
        self,
        request: Request,
        ref: Annotated[SubscriptionRef, Depends(subscription_ref)],
        ctx: Ctx,
        api_version: ApiVersionParameter = None,
    ) -> Access[SubscriptionRef]:
        return self.check(request, ref, api_version, ctx)


class GroupChecks(Checks[GroupRef]):
    def __call__(
        self,
        request: Request,
        ref: Annotated[GroupRef, Depends(group_ref)],
        ctx: Ctx,
        api_version: ApiVersionParameter = None,
    ) -> Access[GroupRef]:
        return self.check(request, ref, api_version, ctx)


class MachineChecks(Checks[MachineRef]):
    def __call__(
        self,
        request: Request,
        ref: Annotated[MachineRef, Depends(machine_ref)],
        ctx: Ctx,
        api_version: ApiVersionParameter = None,
    ) -> Access[MachineRef]:
        return self.check(request, ref, api_version, ctx)


class GatewayChecks(Checks[GatewayRef]):
    def __call__(
        self,
        request: Request,
        ref: Annotated[GatewayRef, Depends(gateway_ref)],
        ctx: Ctx,
        api_version: ApiVersionParameter = None,
    ) -> Access[GatewayRef]:
        return self.check(request, ref, api_version, ctx)


class ExtensionChecks(Checks[ExtensionRef]):
    def __call__(
        self,
        request: Request,
        ref: Annotated[ExtensionRef, Depends(extension_ref)],
        ctx: Ctx,
        api_version: ApiVersionParameter = None,
    ) -> Access[ExtensionRef]:
        return self.check(request, ref, api_version, ctx)


class AssignmentChecks(Checks[AssignmentRef]):
    def __call__(
        self,
        request: Request,
        ref: Annotated[AssignmentRef, Depends(assignment_ref)],
        ctx: Ctx,
        api_version: ApiVersionParameter = None,
    ) -> Access[AssignmentRef]:
        return self.check(request, ref, api_version, ctx)


class OperationChecks(Checks[OperationRef]):
    def __call__(
        self,
        request: Request,
        ref: Annotated[OperationRef, Depends(operation_ref)],
        ctx: Ctx,
        api_version: ApiVersionParameter = None,
    ) -> Access[OperationRef]:
        return self.check(request, ref, api_version, ctx)


@dataclass(frozen=True)
class Visibility:
    """What a caller may see in one subscription for one action."""

    everything: bool = False
    groups: frozenset[str] = frozenset()
    """Lower-case names of the resource groups it sees whole."""
    resources: frozenset[tuple[str, str]] = frozenset()
    """(lower-case group name, lower-case resource id) of single resources it sees."""

    @property
    def empty(self) -> bool:
        return not (self.everything or self.groups or self.resources)

    def within_group(self, group: str) -> Visibility:
        group = group.lower()
        if self.everything or group in self.groups:
            return Visibility(everything=True)
        return Visibility(resources=frozenset(r for r in self.resources if r[0] == group))

    def covers(self, group: str, resource_id: str) -> bool:
        """Whether it takes in the resource ``resource_id`` of the resource group ``group``."""
        group = group.lower()
        return self.everything or group in self.groups or (group, resource_id.lower()) in self.resources

    def group_filter(self) -> ColumnElement[bool]:
        if self.everything:
            return true()
        return ResourceGroup.name_lower.in_(sorted(self.groups))

    def machine_filter(self) -> ColumnElement[bool]:
        if self.everything:
            return true()
        return or_(
            Machine.resource_group_lower.in_(sorted(self.groups)),
            Machine.resource_id_lower.in_(sorted(r[1] for r in self.resources)),
        )


def visibility(caller: Caller, action: str, subscription_id: str) -> Visibility:
    """The part of ``subscription_id`` where ``caller`` may do ``action``."""
    subscription = subscription_scope(subscription_id).lower()
    groups_prefix = subscription + "/resourcegroups/"
    groups: set[str] = set()
    resources: set[tuple[str, str]] = set()
    for role, scope in caller.assignments:
        if not role.allows(action):
            continue
        scope = scope.rstrip("/").lower()
        if scope == subscription:
            return Visibility(everything=True)
        if scope.startswith(groups_prefix):
            group, _, below = scope[len(groups_prefix) :].partition("/")
            if below:
                resources.add((group, scope))
            else:
                groups.add(group)
    return Visibility(False, frozenset(groups), frozenset(resources))
