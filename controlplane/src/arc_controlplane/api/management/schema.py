"""Request bodies of the management API, validated at the edge (S:models.tsp shapes).

Every model forbids unknown members and takes JSON types strictly (no ``"1"`` for ``1``):
anything else is ARM's 400 ``InvalidRequestContent``. Read-only members that ARM accepts and
ignores in a body (``status``, ``provisioningState``, ``identity.principalId``...) are declared
as ``Ignored``: any value passes and none is kept, so a resource read with GET can be sent
back with PUT.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from arc_controlplane.http.locations import LOCATION_RULE, normalize_location
from arc_controlplane.machines.view import SETTABLE
from arc_controlplane.text import text_only

MAX_TAGS = 50
MAX_TAG_NAME = 512
MAX_TAG_VALUE = 256
_TAG_NAME_FORBIDDEN = set("<>%&\\?/")
_ARM_ID = re.compile(r"^/subscriptions/[^/]+(/[^/]+)+$", re.IGNORECASE)
_AGENT_VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){1,3}$")

ARC_KINDS = ("AVS", "HCI", "SCVMM", "VMware", "EPS", "GCP", "AWS")
IDENTITY_KEY_STORES = ("TPM", "Default")
ASSESSMENT_MODES = ("ImageDefault", "AutomaticByPlatform")
PATCH_MODES = ("ImageDefault", "AutomaticByPlatform", "AutomaticByOS", "Manual")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def _location(value: str) -> str:
    normalized = normalize_location(value)
    if normalized is None:
        raise ValueError(f"not a location: use {LOCATION_RULE}")
    return normalized


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)") from None


def _arm_id(value: str) -> str:
    if not _ARM_ID.fullmatch(value):
        raise ValueError("not an ARM resource id (/subscriptions/{id}/resourceGroups/{name}/providers/...)")
    return value


def _agent_version(value: str) -> str:
    if not _AGENT_VERSION.fullmatch(value):
        raise ValueError("not an agent version such as '1.46.02880.1961'")
    return value


def _one_of(*choices: str) -> AfterValidator:
    """Case-insensitive choice among ``choices`` (ARM enums), kept in its canonical spelling."""
    canonical = {choice.lower(): choice for choice in choices}

    def pick(value: str) -> str:
        found = canonical.get(value.lower())
        if found is None:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return found

    return AfterValidator(pick)


def _tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags are allowed, {len(value)} given")
    for name, tag in value.items():
        if not name or len(name) > MAX_TAG_NAME:
            raise ValueError(f"tag names must have 1 to {MAX_TAG_NAME} characters")
        if _TAG_NAME_FORBIDDEN & set(name) or "\x00" in name:
            raise ValueError(f"the tag name {name[:64]!r} has one of the characters < > % & \\ ? / or NUL")
        if len(tag) > MAX_TAG_VALUE:
            raise ValueError(f"the value of tag {name[:64]!r} is longer than {MAX_TAG_VALUE} characters")
        if "\x00" in tag:
            raise ValueError(f"the value of tag {name[:64]!r} has a NUL character")
    return value


def _ignored(value: Any) -> None:
    return None


Text = Annotated[str, Field(max_length=1024), AfterValidator(_no_nul)]
LongText = Annotated[str, Field(max_length=16384), AfterValidator(_no_nul)]
Location = Annotated[str, Field(max_length=128), AfterValidator(_location)]
Guid = Annotated[str, Field(max_length=64), AfterValidator(_guid)]
ArmId = Annotated[str, Field(max_length=1024), AfterValidator(_no_nul), AfterValidator(_arm_id)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]
Ignored = Annotated[
    Any,
    BeforeValidator(_ignored),
    Field(default=None, exclude=True, json_schema_extra={"readOnly": True}),
]
"""A read-only member: accepted with any value, dropped (``readOnly`` in the OpenAPI document)."""


class ArmModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, validate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        """No string or member name anywhere in the body may hold an unpaired surrogate."""
        return text_only(data)


class ResourceGroupBody(ArmModel):
    """``PUT /subscriptions/{sub}/resourcegroups/{name}`` (Microsoft.Resources ResourceGroup)."""

    location: Location
    tags: Tags | None = None
    id: Ignored
    name: Ignored
    type: Ignored
    properties: Ignored


class ResourceGroupUpdate(ArmModel):
    """``PATCH /subscriptions/{sub}/resourcegroups/{name}`` (ResourceGroupPatchable): its tags;
    what is absent stays."""

    tags: Tags | None = None
    name: Ignored
    properties: Ignored
    managed_by: None = None
    """Clients send the group they read back (``null``); managing groups is not offered."""


class Identity(ArmModel):
    """The machine's managed identity: always system-assigned (Arc has no other kind)."""

    type: Annotated[str, _one_of("SystemAssigned")]
    principal_id: Ignored
    tenant_id: Ignored


class PatchSettings(ArmModel):
    assessment_mode: Annotated[str, _one_of(*ASSESSMENT_MODES)] | None = None
    patch_mode: Annotated[str, _one_of(*PATCH_MODES)] | None = None
    enable_hotpatching: bool | None = None
    status: Ignored


class OSConfiguration(ArmModel):
    patch_settings: PatchSettings | None = None


class OSProfile(ArmModel):
    computer_name: Ignored
    windows_configuration: OSConfiguration | None = None
    linux_configuration: OSConfiguration | None = None


class LocationData(ArmModel):
    name: Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
    city: Text | None = None
    district: Text | None = None
    country_or_region: Text | None = None


class AgentUpgrade(ArmModel):
    desired_version: Annotated[str, Field(max_length=64), AfterValidator(_agent_version)] | None = None
    correlation_id: Guid | None = None
    enable_automatic_upgrade: bool | None = None
    last_attempt_desired_version: Ignored
    last_attempt_timestamp: Ignored
    last_attempt_status: Ignored
    last_attempt_message: Ignored


class CloudMetadata(ArmModel):
    provider: Ignored


class MachineUpdateProperties(ArmModel):
    """``MachineUpdateProperties``: what PATCH may change."""

    location_data: LocationData | None = None
    os_profile: OSProfile | None = None
    cloud_metadata: CloudMetadata | None = None
    agent_upgrade: AgentUpgrade | None = None
    parent_cluster_resource_id: ArmId | None = None
    private_link_scope_resource_id: ArmId | None = None
    identity_key_store: Annotated[str, _one_of(*IDENTITY_KEY_STORES)] | None = None
    tpm_ek_certificate: LongText | None = None


class MachineProperties(MachineUpdateProperties):
    """``MachineProperties`` of a PUT: the settable ones, and the read-only ones (ignored)."""

    vm_id: Guid | None = None
    client_public_key: LongText | None = None
    mssql_discovered: Annotated[str, Field(max_length=64), AfterValidator(_no_nul)] | None = None
    os_type: Annotated[str, Field(max_length=64), AfterValidator(_no_nul)] | None = None
    hardware_resource_id: ArmId | None = None
    license_profile: Ignored
    service_statuses: Ignored
    extensions: Ignored
    provisioning_state: Ignored
    status: Ignored
    status_reason: Ignored
    last_status_change: Ignored
    error_details: Ignored
    agent_version: Ignored
    display_name: Ignored
    machine_fqdn: Ignored
    os_name: Ignored
    os_version: Ignored
    vm_uuid: Ignored
    os_sku: Ignored
    os_edition: Ignored
    domain_name: Ignored
    ad_fqdn: Ignored
    dns_fqdn: Ignored
    detected_properties: Ignored
    network_profile: Ignored
    hardware_profile: Ignored
    storage_profile: Ignored
    firmware_profile: Ignored
    agent_configuration: Ignored


class MachineBody(ArmModel):
    """``PUT .../machines/{name}`` (Machines_CreateOrUpdate)."""

    location: Location
    tags: Tags | None = None
    identity: Identity | None = None
    kind: Annotated[str, _one_of(*ARC_KINDS)] | None = None
    properties: MachineProperties | None = None
    id: Ignored
    name: Ignored
    type: Ignored
    system_data: Ignored
    resources: Ignored


class MachineUpdate(ArmModel):
    """``PATCH .../machines/{name}`` (Machines_Update, ``MachineUpdate``)."""

    tags: Tags | None = None
    identity: Identity | None = None
    kind: Annotated[str, _one_of(*ARC_KINDS)] | None = None
    properties: MachineUpdateProperties | None = None


STORED_PROPERTIES = frozenset(SETTABLE)
"""Properties a PUT or PATCH stores (``vmId`` is handled apart; ``cloudMetadata`` only has read-only
members; ``licenseProfile`` and ``serviceStatuses`` are accepted and not kept)."""


def property_changes(properties: MachineUpdateProperties | None) -> dict[str, Any]:
    """The properties a body sets, by ARM name; None for those it sets to ``null``."""
    if properties is None:
        return {}
    dumped = properties.model_dump(by_alias=True, exclude_unset=True)
    return {name: value for name, value in dumped.items() if name in STORED_PROPERTIES}


_PUBLISHER_OR_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
_HANDLER_VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$")


def _publisher_or_type(value: str) -> str:
    if not _PUBLISHER_OR_TYPE.fullmatch(value):
        raise ValueError(
            "letters, digits, '.', '-' and '_', starting with a letter or digit, 1 to 256 of them"
        )
    return value


def _handler_version(value: str) -> str:
    if not _HANDLER_VERSION.fullmatch(value):
        raise ValueError("a version such as '2.1' or '2.1.0'")
    return value


PublisherOrType = Annotated[str, Field(max_length=256), AfterValidator(_publisher_or_type)]
HandlerVersion = Annotated[str, Field(max_length=64), AfterValidator(_handler_version)]


class ExtensionUpdateProperties(ArmModel):
    """``MachineExtensionUpdateProperties``: what PATCH may change."""

    publisher: PublisherOrType | None = None
    type: PublisherOrType | None = None
    type_handler_version: HandlerVersion | None = None
    auto_upgrade_minor_version: bool | None = None
    enable_automatic_upgrade: bool | None = None
    force_update_tag: Text | None = None
    settings: dict[str, Any] | None = None
    protected_settings: dict[str, Any] | None = None


class ExtensionProperties(ExtensionUpdateProperties):
    """``MachineExtensionProperties`` of a PUT; the read-only ones are ignored."""

    provisioning_state: Ignored
    instance_view: Ignored


class ExtensionBody(ArmModel):
    """``PUT .../machines/{machine}/extensions/{name}`` (MachineExtensions_CreateOrUpdate)."""

    location: Location | None = None
    tags: Tags | None = None
    properties: ExtensionProperties
    id: Ignored
    name: Ignored
    type: Ignored
    system_data: Ignored

    @model_validator(mode="after")
    def _publisher_and_type(self) -> ExtensionBody:
        if not self.properties.publisher or not self.properties.type:
            raise ValueError("properties.publisher and properties.type are required")
        return self


class ExtensionUpdate(ArmModel):
    """``PATCH .../machines/{machine}/extensions/{name}`` (``MachineExtensionUpdate``)."""

    tags: Tags | None = None
    properties: ExtensionUpdateProperties | None = None


class ExtensionTarget(ArmModel):
    target_version: HandlerVersion


class ExtensionUpgradeBody(ArmModel):
    """``POST .../machines/{machine}/upgradeExtensions`` (``MachineExtensionUpgrade``)."""

    extension_targets: Annotated[dict[str, ExtensionTarget], Field(min_length=1, max_length=100)]


ParameterName = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_no_nul)]


class ConfigurationParameter(ArmModel):
    """``ConfigurationParameter``: a value for one property of one resource of the document."""

    name: ParameterName
    value: LongText


class GuestConfigurationNavigation(ArmModel):
    """``GuestConfigurationNavigation``: which package, how, with which values."""

    kind: Annotated[str, Field(max_length=16)] | None = None
    name: Text | None = None
    version: Annotated[str, Field(max_length=64), AfterValidator(_no_nul)] | None = None
    content_uri: Annotated[str, Field(max_length=2048), AfterValidator(_no_nul)] | None = None
    content_hash: Annotated[str, Field(max_length=128), AfterValidator(_no_nul)] | None = None
    content_managed_identity: Text | None = None
    assignment_type: Annotated[str, Field(max_length=64), AfterValidator(_no_nul)] | None = None
    configuration_parameter: Annotated[list[ConfigurationParameter], Field(max_length=256)] | None = None
    configuration_protected_parameter: (
        Annotated[list[ConfigurationParameter], Field(max_length=256)] | None
    ) = None
    assignment_source: Ignored
    content_type: Ignored
    configuration_setting: Ignored


class GuestConfigurationAssignmentProperties(ArmModel):
    """``GuestConfigurationAssignmentProperties`` of a PUT; the read-only ones are ignored."""

    guest_configuration: GuestConfigurationNavigation | None = None
    context: Text | None = None
    target_resource_id: Ignored
    compliance_status: Ignored
    last_compliance_status_checked: Ignored
    latest_report_id: Ignored
    parameter_hash: Ignored
    latest_assignment_report: Ignored
    assignment_hash: Ignored
    provisioning_state: Ignored
    resource_type: Ignored
    vmss_vm_list: Annotated[
        Any, BeforeValidator(_ignored), Field(default=None, exclude=True, alias="vmssVMList")
    ]


class GuestConfigurationAssignmentBody(ArmModel):
    """``PUT .../guestConfigurationAssignments/{name}`` (GuestConfigurationHCRPAssignments_CreateOrUpdate)."""

    location: Location | None = None
    properties: GuestConfigurationAssignmentProperties
    id: Ignored
    name: Ignored
    type: Ignored
    system_data: Ignored


ShortText = Annotated[str, Field(max_length=256), AfterValidator(_no_nul)]


class GatewayUpdateProperties(ArmModel):
    """``GatewayUpdateProperties``: what PATCH may change."""

    allowed_features: Annotated[list[ShortText], Field(max_length=16)] | None = None
    gateway_bypass: Annotated[list[ShortText], Field(max_length=256)] | None = None


class GatewayProperties(GatewayUpdateProperties):
    """``GatewayProperties`` of a PUT; the read-only ones are ignored."""

    gateway_type: ShortText | None = None
    provisioning_state: Ignored
    gateway_id: Ignored
    gateway_endpoint: Ignored


class GatewayBody(ArmModel):
    """``PUT .../gateways/{name}`` (Gateways_CreateOrUpdate)."""

    location: Location
    tags: Tags | None = None
    properties: GatewayProperties | None = None
    id: Ignored
    name: Ignored
    type: Ignored
    system_data: Ignored


class GatewayUpdate(ArmModel):
    """``PATCH .../gateways/{name}`` (Gateways_Update)."""

    tags: Tags | None = None
    properties: GatewayUpdateProperties | None = None


class SettingsGatewayProperties(ArmModel):
    gateway_resource_id: ArmId | None = None


class SettingsProperties(ArmModel):
    gateway_properties: SettingsGatewayProperties | None = None
    tenant_id: Ignored


class SettingsBody(ArmModel):
    """``PUT`` / ``PATCH .../machines/{name}/providers/Microsoft.HybridCompute/settings/default``."""

    properties: SettingsProperties | None = None
    id: Ignored
    name: Ignored
    type: Ignored
    system_data: Ignored
