"""The control plane's tables (SQLAlchemy 2, typed).

Resource ids and names are stored as given (for display) and lower-cased (for lookups): ARM
resource ids and names are case-insensitive. Times are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite returns naive values
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime]


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    display_name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime]


class ResourceGroup(Base):
    __tablename__ = "resource_groups"
    __table_args__ = (UniqueConstraint("subscription_id", "name_lower"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    name: Mapped[str] = mapped_column(String(90))
    name_lower: Mapped[str] = mapped_column(String(90))
    location: Mapped[str] = mapped_column(String(64))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime]


class Principal(Base):
    """A service principal (client id + secret or certificate) or a machine's managed identity."""

    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    """Object id (``oid`` in tokens)."""
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    app_id: Mapped[str] = mapped_column(String(36), unique=True)
    """Client id (``appid`` in tokens)."""
    kind: Mapped[str] = mapped_column(String(32))
    """``ServicePrincipal`` or ``ManagedIdentity``."""
    display_name: Mapped[str] = mapped_column(String(256))
    secret_hash: Mapped[str | None] = mapped_column(String(512), default=None)
    certificate_pem: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime]


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    __table_args__ = (UniqueConstraint("principal_id", "role", "scope_lower"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(512))
    scope_lower: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[dt.datetime]


class Gateway(Base):
    """A ``Microsoft.HybridCompute/gateways`` resource: an Arc gateway that machines linked to it
    (their ``settings/default``) send all their traffic through (docs/gateway.md)."""

    __tablename__ = "gateways"
    __table_args__ = (
        UniqueConstraint("resource_id_lower"),
        Index("ix_gateways_group", "subscription_id", "resource_group_lower", "name_lower"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_id: Mapped[str] = mapped_column(String(512))
    resource_id_lower: Mapped[str] = mapped_column(String(512))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    resource_group_lower: Mapped[str] = mapped_column(String(90))
    name: Mapped[str] = mapped_column(String(64))
    name_lower: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(64))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    gateway_id: Mapped[str] = mapped_column(String(36), unique=True)
    """``properties.gatewayId``: what the Arc proxy names in each tunnel it asks for."""
    gateway_type: Mapped[str] = mapped_column(String(16), default="Public")
    allowed_features: Mapped[list[Any]] = mapped_column(default=list)
    gateway_bypass: Mapped[list[Any]] = mapped_column(default=list)
    provisioning_state: Mapped[str] = mapped_column(String(32), default="Succeeded")
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class Machine(Base):
    """A ``Microsoft.HybridCompute/machines`` resource and what its agent reported."""

    __tablename__ = "machines"
    __table_args__ = (
        UniqueConstraint("resource_id_lower"),
        Index("ix_machines_group", "subscription_id", "resource_group_lower", "name_lower"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_id: Mapped[str] = mapped_column(String(512))
    resource_id_lower: Mapped[str] = mapped_column(String(512))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    resource_group_lower: Mapped[str] = mapped_column(String(90))
    name: Mapped[str] = mapped_column(String(54))
    name_lower: Mapped[str] = mapped_column(String(54))
    location: Mapped[str] = mapped_column(String(64))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    kind: Mapped[str | None] = mapped_column(String(16), default=None)
    vm_id: Mapped[str] = mapped_column(String(36), unique=True)
    """The machine's identity towards the control plane (``vmId``)."""
    principal_id: Mapped[str | None] = mapped_column(String(36), default=None)
    """Object id of the machine's system-assigned identity, once connected."""
    tenant_id: Mapped[str] = mapped_column(String(36))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What the agent reports (os*, detectedProperties, hardwareProfile, ...) and PATCHable
    properties (agentUpgrade, locationData, ...), in ARM shape."""
    provisioning_state: Mapped[str] = mapped_column(String(32), default="Succeeded")
    connected: Mapped[bool] = mapped_column(default=False)
    """An agent has registered (False while ``AwaitingConnection``)."""
    agent_version: Mapped[str | None] = mapped_column(String(64), default=None)
    public_key_pem: Mapped[str | None] = mapped_column(Text, default=None)
    credential_not_after: Mapped[dt.datetime | None] = mapped_column(default=None)
    host_id: Mapped[str | None] = mapped_column(String(128), default=None)
    """Fingerprint of the host that registered; another host heartbeating means a clone."""
    last_heartbeat: Mapped[dt.datetime | None] = mapped_column(default=None)
    status_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    error_details: Mapped[list[Any]] = mapped_column(default=list)
    last_status_change: Mapped[dt.datetime]
    generation: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped whenever there is new work for the agent (long-poll notifications)."""
    extensions_generation: Mapped[int] = mapped_column(Integer, server_default="0")
    """The ``generation`` of the last work for the agent's extension service (extensions, agent
    upgrade): the agent wakes that service only when it moved (``machines/work.py``)."""
    configuration_generation: Mapped[int] = mapped_column(Integer, server_default="0")
    """The same for its machine configuration service (guest configuration assignments)."""
    extension_certificate_pem: Mapped[str | None] = mapped_column(Text, default=None)
    """The certificate the machine's extension service registered: protected settings are
    encrypted to it (docs/extensions.md)."""
    extension_certificate_thumbprint: Mapped[str | None] = mapped_column(String(40), default=None)
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("gateways.id"), default=None, index=True)
    """The Arc gateway of its ``settings/default`` (docs/gateway.md), if any."""
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class MachineExtension(Base):
    """A ``Microsoft.HybridCompute/machines/extensions`` resource: what is asked of the machine's
    extension service, and what it reported (docs/extensions.md)."""

    __tablename__ = "machine_extensions"
    __table_args__ = (UniqueConstraint("machine_id", "name_lower"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    name_lower: Mapped[str] = mapped_column(String(64))
    publisher: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(256))
    type_handler_version: Mapped[str | None] = mapped_column(String(64), default=None)
    auto_upgrade_minor_version: Mapped[bool | None] = mapped_column(default=None)
    enable_automatic_upgrade: Mapped[bool | None] = mapped_column(default=None)
    force_update_tag: Mapped[str | None] = mapped_column(String(256), default=None)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    protected_settings: Mapped[str | None] = mapped_column(Text, default=None)
    """The protected settings as a CMS enveloped message to the machine's extension certificate
    (base64 of DER); never plain text."""
    protected_settings_thumbprint: Mapped[str | None] = mapped_column(String(40), default=None)
    protected_settings_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    """HMAC-SHA-256 of the protected settings with the control plane's own key: a PUT of the same
    ones is no change."""
    provisioning_state: Mapped[str] = mapped_column(String(32))
    instance_view: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    sequence_number: Mapped[int] = mapped_column(Integer, default=0)
    """Of the latest change asked of the agent (the handler model's ConfigSequenceNumber)."""
    deleting: Mapped[bool] = mapped_column(default=False)
    operation_id: Mapped[str | None] = mapped_column(String(36), default=None)
    """The asynchronous operation the agent's report of ``sequence_number`` ends."""
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class ExtensionPackage(Base):
    """A published extension handler package (``arc-controlplane extension publish``): its file
    is ``DATA_DIR/packages/<sha256>.zip``; agents check its SHA-256 and ``signature``."""

    __tablename__ = "extension_packages"
    __table_args__ = (UniqueConstraint("publisher_lower", "type_lower", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    publisher: Mapped[str] = mapped_column(String(256))
    publisher_lower: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(256))
    type_lower: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    signature: Mapped[str] = mapped_column(Text)
    """A JWS (ES256) by the control plane's package-signing key over publisher, type, version,
    sha256 and size."""
    handler_manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    published_at: Mapped[dt.datetime]


class AgentPackage(Base):
    """A published agent package (``arc-controlplane agent publish``): the runtime of one agent
    version for one target (CPython version and machine, e.g. ``cp311-x86_64``); its file is
    ``DATA_DIR/packages/agent/<sha256>.tar.gz``; agents check its SHA-256 and ``signature``."""

    __tablename__ = "agent_packages"
    __table_args__ = (UniqueConstraint("version", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    archive: Mapped[str] = mapped_column(String(256))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    signature: Mapped[str] = mapped_column(Text)
    """A JWS (ES256) by the package-signing key over version, target, sha256 and size."""
    published_at: Mapped[dt.datetime]
    halted: Mapped[str | None] = mapped_column(Text, default=None)
    """Why automatic upgrades no longer offer this version (a machine failed to upgrade to it)."""


class ConfigurationPackage(Base):
    """A published machine configuration package (``arc-controlplane configuration publish``): its
    file is ``DATA_DIR/packages/configuration/<sha256>.zip``; agents check its SHA-256 and
    ``signature`` (docs/machine-configuration.md)."""

    __tablename__ = "configuration_packages"
    __table_args__ = (UniqueConstraint("name_lower", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256))
    name_lower: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(64))
    package_type: Mapped[str] = mapped_column(String(16))
    """The metaconfig's ``Type``: ``Audit`` or ``AuditAndSet``."""
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    signature: Mapped[str] = mapped_column(Text)
    """A JWS (ES256) by the package-signing key over name, version, sha256 and size."""
    resources: Mapped[list[Any]] = mapped_column(default=list)
    """The document's resources: ``resourceId``, ``class`` and ``properties`` (names)."""
    published_at: Mapped[dt.datetime]


class GuestConfigurationAssignment(Base):
    """A ``Microsoft.GuestConfiguration/guestConfigurationAssignments`` resource on a machine: what
    is asked (``configuration``, the ``guestConfiguration`` object as given and completed) and the
    compliance the machine's reports gave (docs/machine-configuration.md)."""

    __tablename__ = "guest_configuration_assignments"
    __table_args__ = (UniqueConstraint("machine_id", "name_lower"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    name_lower: Mapped[str] = mapped_column(String(256))
    configuration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    context: Mapped[str | None] = mapped_column(String(256), default=None)
    assignment_hash: Mapped[str] = mapped_column(String(64))
    compliance_status: Mapped[str] = mapped_column(String(16), default="Pending")
    latest_report_id: Mapped[str | None] = mapped_column(String(36), default=None)
    last_compliance_status_checked: Mapped[dt.datetime | None] = mapped_column(default=None)
    provisioning_state: Mapped[str] = mapped_column(String(32), default="Succeeded")
    protected_parameters: Mapped[str | None] = mapped_column(Text, default=None)
    """``configurationProtectedParameter`` as a CMS enveloped message to the machine's extension
    certificate (base64 of DER), as protected settings are kept; never plain text."""
    protected_parameters_thumbprint: Mapped[str | None] = mapped_column(String(40), default=None)
    protected_parameters_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    """HMAC-SHA-256 of them with the control plane's own key: a PUT of the same ones is no change."""
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class GuestConfigurationReport(Base):
    """One evaluation of an assignment on its machine, as the agent reported it (the newest
    ``REPORTS_KEPT`` per assignment are kept)."""

    __tablename__ = "guest_configuration_reports"
    __table_args__ = (Index("ix_gc_reports_assignment", "assignment_id", "end_time"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    """The report id (a GUID the agent chose: a report sent twice is kept once)."""
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("guest_configuration_assignments.id", ondelete="CASCADE")
    )
    assignment_hash: Mapped[str] = mapped_column(String(64))
    compliance_status: Mapped[str] = mapped_column(String(16))
    operation_type: Mapped[str] = mapped_column(String(16))
    """``Initial`` (the first evaluation of this assignment) or ``Consistency``."""
    job_id: Mapped[str] = mapped_column(String(36))
    configuration_version: Mapped[str] = mapped_column(String(64))
    start_time: Mapped[dt.datetime]
    end_time: Mapped[dt.datetime]
    resources: Mapped[list[Any]] = mapped_column(default=list)
    """Each resource: ``complianceStatus``, ``resourceId``, ``reasons[{code, phrase}]``, ``properties``."""
    received_at: Mapped[dt.datetime]


class Operation(Base):
    """An asynchronous ARM operation (``Azure-AsyncOperation`` / ``Location`` targets)."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(36))
    location: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(32))
    """``InProgress``, ``Succeeded``, ``Failed`` or ``Canceled``."""
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    start_time: Mapped[dt.datetime]
    end_time: Mapped[dt.datetime | None] = mapped_column(default=None)


class AuditEntry(Base):
    """Who changed what, when, with which result."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[dt.datetime] = mapped_column(index=True)
    principal_id: Mapped[str | None] = mapped_column(String(36), default=None)
    principal_name: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(256))
    target: Mapped[str] = mapped_column(String(512))
    result: Mapped[str] = mapped_column(String(64))
    """``Succeeded``, ``Failed``, ``Denied`` (with an HTTP status or reason after a colon)."""
    detail: Mapped[str] = mapped_column(Text, default="")
