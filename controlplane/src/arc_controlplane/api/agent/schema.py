"""Request and response bodies of the agent API (JSON, camelCase), validated at the edge.

Every request model forbids unknown fields, so a typo is a 400 naming the field rather than a
silently ignored value. What the agent reports about its machine is accepted only for the
whitelisted ARM ``MachineProperties`` keys (``machines.registration.REPORTED_PROPERTIES``; a
test keeps ``MachineReport`` in step with it), in ARM's shape.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from arc_controlplane.text import text_only

# --- scalar types ------------------------------------------------------------------------------


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("not a GUID (e.g. 00000000-0000-0000-0000-000000000000)") from None


_TAG_NAME_FORBIDDEN = re.compile(r"[<>%&\\?/]")
MAX_TAGS = 50


def _tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for name, tag_value in value.items():
        if not 1 <= len(name) <= 512 or _TAG_NAME_FORBIDDEN.search(name):
            raise ValueError(f"tag name {name[:40]!r} is invalid: 1-512 characters, none of < > % & \\ ? /")
        if len(tag_value) > 256:
            raise ValueError(f"the value of tag {name[:40]!r} is longer than 256 characters")
    return value


Guid = Annotated[str, StringConstraints(max_length=64), AfterValidator(_guid)]
"""A GUID in any accepted spelling, normalised to lower case with hyphens."""
Text = Annotated[str, StringConstraints(max_length=1024)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]
HostId = Annotated[str, StringConstraints(min_length=8, max_length=128, pattern=r"^[!-~]+$")]
"""Printable ASCII without spaces: an opaque, stable fingerprint of the host."""
AgentVersion = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z.+_-]+$")]
Location = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]*$")
]
PublicKeyPem = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Count = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]


class AgentModel(BaseModel):
    """A request body: camelCase names, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        """No string or member name anywhere in the body may hold an unpaired surrogate."""
        return text_only(data)


class AgentResponse(BaseModel):
    """A response body: camelCase names."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# --- machine properties in ARM shape (S:models.tsp MachineProperties) ----------------------------


class ServiceStatus(AgentModel):
    status: ShortText | None = None
    startup_type: ShortText | None = None


class ServiceStatuses(AgentModel):
    extension_service: ServiceStatus | None = None
    guest_configuration_service: ServiceStatus | None = None


class Processor(AgentModel):
    name: ShortText | None = None
    number_of_cores: Count | None = None


class HardwareProfile(AgentModel):
    total_physical_memory_in_bytes: Count | None = None
    number_of_cpu_sockets: Count | None = None
    processors: list[Processor] | None = Field(default=None, max_length=1024)


class Subnet(AgentModel):
    address_prefix: ShortText | None = None


class IpAddress(AgentModel):
    address: ShortText | None = None
    ip_address_version: ShortText | None = None
    subnet: Subnet | None = None


class NetworkInterface(AgentModel):
    mac_address: ShortText | None = None
    id: ShortText | None = None
    name: ShortText | None = None
    ip_addresses: list[IpAddress] | None = Field(default=None, max_length=256)


class NetworkProfile(AgentModel):
    network_interfaces: list[NetworkInterface] | None = Field(default=None, max_length=256)


class FirmwareProfile(AgentModel):
    serial_number: ShortText | None = None
    type: ShortText | None = None


class CloudMetadata(AgentModel):
    provider: ShortText | None = None


class ConfigurationExtension(AgentModel):
    publisher: ShortText | None = None
    type: ShortText | None = None


class AgentConfiguration(AgentModel):
    proxy_url: Text | None = None
    incoming_connections_ports: list[ShortText] | None = Field(default=None, max_length=1024)
    extensions_allow_list: list[ConfigurationExtension] | None = Field(default=None, max_length=1024)
    extensions_block_list: list[ConfigurationExtension] | None = Field(default=None, max_length=1024)
    proxy_bypass: list[ShortText] | None = Field(default=None, max_length=64)
    extensions_enabled: ShortText | None = None
    guest_configuration_enabled: ShortText | None = None
    config_mode: ShortText | None = None


class AgentUpgradeReport(AgentModel):
    """How the agent's last upgrade attempt ended (``agentUpgrade.lastAttempt*``, read-only in
    ARM; docs/agent-upgrade.md): merged into the machine's ``agentUpgrade``."""

    last_attempt_desired_version: ShortText | None = None
    last_attempt_status: Literal["Success", "Failed"] | None = None
    last_attempt_message: Text | None = None
    last_attempt_timestamp: ShortText | None = None


class MachineReport(AgentModel):
    """What the agent detected about its machine: the whitelisted ARM property keys.

    In a registration, the full report; in a heartbeat's ``changes``, only what changed, where
    ``null`` removes a property.
    """

    os_name: ShortText | None = None
    os_type: ShortText | None = None
    os_version: ShortText | None = None
    os_sku: ShortText | None = None
    os_edition: ShortText | None = None
    machine_fqdn: ShortText | None = None
    display_name: ShortText | None = None
    domain_name: ShortText | None = None
    ad_fqdn: ShortText | None = None
    dns_fqdn: ShortText | None = None
    vm_uuid: Guid | None = None
    detected_properties: dict[ShortText, Text] | None = Field(default=None, max_length=256)
    hardware_profile: HardwareProfile | None = None
    network_profile: NetworkProfile | None = None
    firmware_profile: FirmwareProfile | None = None
    cloud_metadata: CloudMetadata | None = None
    agent_configuration: AgentConfiguration | None = None
    service_statuses: ServiceStatuses | None = None
    mssql_discovered: ShortText | None = None

    def arm_properties(self) -> dict[str, Any]:
        """The properties as stored and shown in ARM: camelCase, only what was given."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def arm_changes(self) -> dict[str, Any]:
        """The keys given (even as ``null``) with their new values; ``None`` means "remove"."""
        given = self.arm_properties()
        return {to_camel(name): given.get(to_camel(name)) for name in self.model_fields_set}


class ErrorAdditionalInfo(AgentModel):
    type: ShortText
    info: dict[str, Any] | None = None


class InnerErrorDetail(AgentModel):
    code: ShortText
    message: Text
    target: ShortText | None = None
    additional_info: list[ErrorAdditionalInfo] | None = Field(default=None, max_length=16)


class ErrorDetail(AgentModel):
    """An ARM error object (two levels deep at most)."""

    code: ShortText
    message: Text
    target: ShortText | None = None
    details: list[InnerErrorDetail] | None = Field(default=None, max_length=16)
    additional_info: list[ErrorAdditionalInfo] | None = Field(default=None, max_length=16)


# --- requests ----------------------------------------------------------------------------------

Cloud = Literal["AzureCloud", "AzureUSGovernment", "AzureChinaCloud"]


class RegisterRequest(AgentModel):
    subscription_id: ShortText
    resource_group: ShortText
    resource_name: ShortText
    location: Location
    tenant_id: Guid
    tags: Tags = Field(default_factory=dict)
    cloud: Cloud = "AzureCloud"
    correlation_id: Guid | None = None
    public_key: PublicKeyPem
    host_id: HostId
    agent_version: AgentVersion
    properties: MachineReport = Field(default_factory=MachineReport)
    enable_automatic_upgrade: StrictBool | None = None
    """``azcmagent connect --enable-automatic-upgrade``: sets ``agentUpgrade.enableAutomaticUpgrade``."""


class HeartbeatRequest(AgentModel):
    host_id: HostId
    agent_version: AgentVersion
    service_statuses: ServiceStatuses | None = None
    error_details: list[ErrorDetail] = Field(default_factory=list, max_length=16)
    changes: MachineReport | None = None
    agent_upgrade: AgentUpgradeReport | None = None
    """The last upgrade attempt, when it changed (merged into ``agentUpgrade``)."""


class RenewCredentialRequest(AgentModel):
    host_id: HostId
    public_key: PublicKeyPem | None = None


class IdentityTokenRequest(AgentModel):
    resource: Annotated[str, StringConstraints(min_length=1, max_length=512)]


# --- responses ---------------------------------------------------------------------------------


class Credential(AgentResponse):
    certificate: str = Field(description="PEM X.509 certificate over the machine's key, CN = vmId")
    not_after: str = Field(description="End of validity, ISO 8601 UTC (e.g. 2026-01-31T12:00:00Z)")


class RegisterResponse(AgentResponse):
    resource_id: str
    vm_id: str
    tenant_id: str
    principal_id: str
    location: str
    generation: int
    credential: Credential
    heartbeat_interval_seconds: int
    assertion_audience: str = Field(description="The 'aud' of the machine's assertions")


class HeartbeatResponse(AgentResponse):
    heartbeat_interval_seconds: int
    renew_credential: StrictBool
    generation: int


class RenewCredentialResponse(AgentResponse):
    credential: Credential


class NotificationResponse(AgentResponse):
    generation: int


class MachineView(AgentResponse):
    resource_id: str
    vm_id: str
    generation: int
    tags: dict[str, Any]
    agent_upgrade: dict[str, Any] | None
    offered_agent_version: str | None = None
    """With ``agentUpgrade.enableAutomaticUpgrade``: the version the rollout offers the machine now
    (docs/agent-upgrade.md, "Automatic upgrades"); None when it has nothing to do."""
    gateway: dict[str, Any] | None = None
    """The Arc gateway the machine is linked to (its ``settings/default``): ``id`` (resource id),
    ``gatewayId``, ``endpoint`` (where the gateway service listens), ``bypass``; None for none
    (docs/gateway.md)."""
    service_generations: dict[str, int]
    """For each of the agent's on-demand services (``extd``, ``gcad``), the generation of the last
    work for it: the agent wakes a service when its number moved (``machines/work.py``)."""


class EndpointsView(AgentResponse):
    """Each service's base URL (``arc_controlplane.endpoints``)."""

    identity: str
    management: str
    agent_service: str
    guest_configuration: str
    notifications: str
    downloads: str


class ExtensionCertificateRequest(AgentModel):
    """The extension service's certificate (PEM): protected settings are encrypted to it."""

    certificate: Annotated[str, StringConstraints(min_length=1, max_length=16384)]


class ExtensionCertificateResponse(AgentResponse):
    thumbprint: str


class ExtensionStatusReport(AgentModel):
    """What the handler of an extension did with a sequence number (docs/extensions.md)."""

    sequence_number: Count
    status: Literal["transitioning", "success", "warning", "error"]
    code: Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)] = 0
    message: Annotated[str, StringConstraints(max_length=4096)] = ""
    operation: ShortText = ""
    type_handler_version: Annotated[str, StringConstraints(max_length=64)] | None = None


class ExtensionGoal(AgentResponse):
    package: dict[str, Any]
    name: str
    publisher: str
    type: str
    type_handler_version: str | None
    auto_upgrade_minor_version: bool
    enable_automatic_upgrade: bool
    force_update_tag: str
    sequence_number: int
    state: str
    settings: dict[str, Any]
    protected_settings: str
    protected_settings_cert_thumbprint: str


class AgentPackageInfo(AgentResponse):
    version: str
    target: str
    sha256: str
    size: int
    signature: str
    """A JWS (ES256) by the package-signing key over version, target, sha256 and size."""
    uri: str


class AgentPackageList(AgentResponse):
    packages: list[AgentPackageInfo]


class PackageKeys(BaseModel):
    """The package-signing key as a JWKS."""

    keys: list[dict[str, Any]]


class ExtensionGoalState(AgentResponse):
    generation: int
    extensions: list[ExtensionGoal]


class GuestConfigurationReason(AgentModel):
    code: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    phrase: Annotated[str, StringConstraints(max_length=4096)]


class GuestConfigurationResourceReport(AgentModel):
    """One resource of an evaluation, in the shape of Azure's ``AssignmentReportResource``."""

    compliance_status: Literal["Compliant", "NonCompliant"]
    resource_id: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    reasons: Annotated[list[GuestConfigurationReason], Field(max_length=64)] = []
    properties: dict[str, Any] = {}


class GuestConfigurationReportBody(AgentModel):
    """An evaluation of an assignment (docs/agent-protocol.md, 5.10)."""

    report_id: Guid
    assignment_hash: Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{64}$")]
    compliance_status: Literal["Compliant", "NonCompliant"]
    operation_type: Literal["Initial", "Consistency"]
    job_id: Guid
    configuration_version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    start_time: AwareDatetime
    end_time: AwareDatetime
    resources: Annotated[list[GuestConfigurationResourceReport], Field(max_length=1024)]


class GuestConfigurationReportAnswer(AgentResponse):
    recorded: bool
    """False when the report was known already (sent again)."""
    current: bool
    """Whether it set the assignment's compliance (a report of the current hash, the newest)."""


class GuestConfigurationAssignmentGoal(AgentResponse):
    name: str
    assignment_hash: str
    configuration: dict[str, Any]
    package: dict[str, Any] | None
    """uri, sha256, size, signature; None when the package was removed from the store."""


class GuestConfigurationGoalState(AgentResponse):
    generation: int
    assignments: list[GuestConfigurationAssignmentGoal]


class IdentityTokenResponse(BaseModel):
    """Azure's managed-identity token response (snake_case, times as strings of epoch seconds)."""

    access_token: str
    expires_on: str
    expires_in: str
    not_before: str
    resource: str
    token_type: Literal["Bearer"]


class DisconnectResponse(AgentResponse):
    resource_id: str


class ArmErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """``{"error": {"code", "message"}}``, as every failure answers."""

    error: ArmErrorBody
