"""Extensions of a machine: what the management API asks, what the agent reports (docs/extensions.md).

Every change the agent must act on gets the next sequence number and bumps the machine's
generation, which wakes the agent's long-poll; the routes start an asynchronous operation for it
(``http/operations.py``) and keep its id on the extension. The agent's report of that sequence
number decides how the operation ends: ``Succeeded``, or ``Failed`` with the handler's message. A
report about an older sequence number changes only the instance view.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.clock import iso8601
from arc_controlplane.db.tables import ExtensionPackage, Machine, MachineExtension, Operation
from arc_controlplane.errors import ArmError
from arc_controlplane.machines import catalog, protected_settings
from arc_controlplane.machines.work import EXTENSIONS, bump

EXTENSION_TYPE = "Microsoft.HybridCompute/machines/extensions"
CREATING, UPDATING, DELETING = "Creating", "Updating", "Deleting"
SUCCEEDED, FAILED = "Succeeded", "Failed"
TERMINAL_STATUSES = ("success", "warning", "error")
LEVELS = {"success": "Info", "transitioning": "Info", "warning": "Warning", "error": "Error"}
DISPLAY = {
    "success": "Provisioning succeeded",
    "transitioning": "Transitioning",
    "warning": "Provisioning succeeded",
    "error": "Provisioning failed",
}

AGENT_FIELDS = (
    "publisher",
    "type",
    "type_handler_version",
    "auto_upgrade_minor_version",
    "enable_automatic_upgrade",
    "force_update_tag",
    "settings",
)
"""What the agent acts on, besides the protected settings: the body's property names (snake_case)
are the table's column names."""


@dataclass(frozen=True)
class ExtensionRequest:
    """What a PUT (``replace``: every field, absent ones cleared) or a PATCH (only ``given``)
    asks of an extension, in the table's terms. ``protected`` is None when not given."""

    given: frozenset[str]
    values: dict[str, Any]
    protected: dict[str, Any] | None
    tags: dict[str, str] | None
    replace: bool


@dataclass(frozen=True)
class Change:
    """What a request did: ``work`` for the agent (then an operation is to be started and
    its id kept), and the operation it replaced (to end ``Canceled``), if any."""

    extension: MachineExtension
    created: bool
    work: bool
    replaced_operation: str | None


def find_extension(
    session: Session, machine: Machine, name: str, *, for_update: bool = False
) -> MachineExtension | None:
    query = select(MachineExtension).where(
        MachineExtension.machine_id == machine.id, MachineExtension.name_lower == name.lower()
    )
    return session.scalars(query.with_for_update() if for_update else query).first()


def list_extensions(session: Session, machine: Machine) -> list[MachineExtension]:
    query = select(MachineExtension).where(MachineExtension.machine_id == machine.id)
    return list(session.scalars(query.order_by(MachineExtension.name_lower)))


def extension_not_found(machine: Machine, name: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{EXTENSION_TYPE}/{name}' of machine '{machine.name}' was not found.",
    )


def _not_ready(machine: Machine) -> ArmError:
    return ArmError(
        409,
        "MachineNotReadyForExtensions",
        f"The machine '{machine.name}' has no extension certificate yet, so its protected settings cannot be"
        " encrypted for it (they are never kept in plain text). Connect the machine with an agent whose"
        " extension service runs (it registers the certificate when it starts), then send the request again.",
    )


def apply_request(
    session: Session,
    machine: Machine,
    extension: MachineExtension | None,
    name: str,
    request: ExtensionRequest,
    *,
    digest_key: bytes,
    now: dt.datetime,
) -> Change:
    """Create or change ``extension`` (None: it does not exist) as ``request`` asks."""
    created = extension is None
    if extension is None:
        extension = MachineExtension(
            machine_id=machine.id,
            name=name,
            name_lower=name.lower(),
            publisher="",
            type="",
            settings={},
            tags={},
            provisioning_state=CREATING,
            sequence_number=0,
            deleting=False,
            created_at=now,
            updated_at=now,
        )
        session.add(extension)
    else:
        for identity in ("publisher", "type"):
            wanted = request.values.get(identity)
            if (
                identity in request.given
                and wanted
                and str(wanted).lower() != str(getattr(extension, identity)).lower()
            ):
                raise ArmError(
                    409,
                    "PropertyChangeNotAllowed",
                    f"Changing property '{identity}' of extension '{extension.name}' is not allowed"
                    f" ('{getattr(extension, identity)}'): delete the extension, then create it again.",
                )
    before = {name_: getattr(extension, name_) for name_ in AGENT_FIELDS}
    for name_ in AGENT_FIELDS:
        if name_ in request.given or request.replace:
            value = request.values.get(name_)
            setattr(extension, name_, value if value is not None or name_ != "settings" else {})
    if request.tags is not None or request.replace:
        extension.tags = dict(request.tags or {})
    require_package(session, extension)
    protected_changed = _apply_protected(machine, extension, request, digest_key)
    work = (
        created
        or protected_changed
        or any(before[name_] != getattr(extension, name_) for name_ in AGENT_FIELDS)
        or extension.provisioning_state == FAILED
        or extension.deleting
    )
    replaced = None
    if work:
        replaced = extension.operation_id
        extension.sequence_number += 1
        extension.provisioning_state = CREATING if created else UPDATING
        extension.deleting = False
        extension.operation_id = None
        bump(machine, EXTENSIONS)
    extension.updated_at = now
    return Change(extension, created, work, replaced)


def require_package(session: Session, extension: MachineExtension) -> ExtensionPackage:
    """The published package the extension asks for; 400 naming what is published when none."""
    packages = catalog.versions_of(session, extension.publisher, extension.type)
    name = f"{extension.publisher}.{extension.type}"
    if not packages:
        raise ArmError(
            400,
            "InvalidParameter",
            f"No extension {name} is published in this control plane: publish its package"
            " ('arc-controlplane extension publish'), or check publisher and type"
            " ('arc-controlplane extension list').",
        )
    chosen = catalog.resolve(
        packages, extension.type_handler_version, bool(extension.auto_upgrade_minor_version)
    )
    if chosen is None:
        raise ArmError(
            400,
            "InvalidParameter",
            f"Extension {name} has no version {extension.type_handler_version}: the published versions are"
            f" {', '.join(p.version for p in packages)}.",
        )
    return chosen


def _apply_protected(
    machine: Machine, extension: MachineExtension, request: ExtensionRequest, digest_key: bytes
) -> bool:
    """Encrypt new protected settings to the machine's certificate; whether they changed."""
    if request.protected is None:
        if not request.replace or extension.protected_settings_digest is None:
            return False
        extension.protected_settings = extension.protected_settings_thumbprint = None
        extension.protected_settings_digest = None
        return True
    if not request.protected:
        changed = extension.protected_settings_digest is not None
        extension.protected_settings = extension.protected_settings_thumbprint = None
        extension.protected_settings_digest = None
        return changed
    digest = protected_settings.digest(request.protected, digest_key)
    if digest == extension.protected_settings_digest and (
        extension.protected_settings_thumbprint == machine.extension_certificate_thumbprint
    ):
        return False
    if not machine.extension_certificate_pem:
        raise _not_ready(machine)
    certificate = protected_settings.load_extension_certificate(machine.extension_certificate_pem)
    extension.protected_settings = protected_settings.encrypt(request.protected, certificate)
    extension.protected_settings_thumbprint = machine.extension_certificate_thumbprint
    extension.protected_settings_digest = digest
    return True


def still_waiting(session: Session, machine: Machine, operation_id: str) -> bool:
    """Whether another extension of the machine still waits for a report that ends
    ``operation_id`` (an upgrade of several extensions is one operation)."""
    session.flush()
    query = select(MachineExtension.id).where(
        MachineExtension.machine_id == machine.id, MachineExtension.operation_id == operation_id
    )
    return session.scalars(query).first() is not None


def request_upgrades(
    session: Session, machine: Machine, targets: dict[str, str], now: dt.datetime
) -> tuple[list[MachineExtension], list[str]]:
    """``upgradeExtensions``: each ``Publisher.Type`` of ``targets`` to its target version. The
    extensions that change (work for the agent) and the operations they replace."""
    extensions = {f"{e.publisher}.{e.type}".lower(): e for e in list_extensions(session, machine)}
    changed, replaced = [], []
    for key, version in sorted(targets.items()):
        extension = extensions.get(key.lower())
        if extension is None:
            raise ArmError(
                400,
                "InvalidParameter",
                f"The machine '{machine.name}' has no extension {key}: its extensions are"
                f" {', '.join(sorted(f'{e.publisher}.{e.type}' for e in extensions.values())) or 'none'}.",
            )
        if extension.type_handler_version == version and extension.provisioning_state != FAILED:
            continue
        extension.type_handler_version = version
        require_package(session, extension)
        if extension.operation_id:
            replaced.append(extension.operation_id)
        extension.operation_id = None
        extension.sequence_number += 1
        extension.provisioning_state = UPDATING
        extension.deleting = False
        extension.updated_at = now
        changed.append(extension)
    if changed:
        bump(machine, EXTENSIONS)
    return changed, replaced


def request_delete(machine: Machine, extension: MachineExtension, now: dt.datetime) -> str | None:
    """Ask the agent to remove ``extension``; the operation it replaced, if any."""
    replaced = extension.operation_id
    extension.sequence_number += 1
    extension.provisioning_state = DELETING
    extension.deleting = True
    extension.operation_id = None
    extension.updated_at = now
    bump(machine, EXTENSIONS)
    return replaced


@dataclass(frozen=True)
class Report:
    """What the agent says its handler did with a sequence number."""

    sequence_number: int
    status: str
    """``transitioning``, ``success``, ``warning`` or ``error``."""
    code: int
    message: str
    type_handler_version: str | None
    time: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """How a report ends the extension's operation: ``operation_id`` None when it does not."""

    operation_id: str | None
    error: dict[str, Any] | None
    removed: bool


def apply_report(
    session: Session, machine: Machine, extension: MachineExtension, report: Report, now: dt.datetime
) -> Outcome:
    """Record the agent's report; a terminal one of the current sequence number ends the
    change: the extension is removed (a deletion that succeeded), or Succeeded, or Failed."""
    extension.instance_view = {
        "name": extension.name,
        "type": extension.type,
        "typeHandlerVersion": report.type_handler_version or extension.type_handler_version,
        "status": {
            "code": str(report.code),
            "level": LEVELS[report.status],
            "displayStatus": DISPLAY[report.status],
            "message": report.message,
            "time": iso8601(report.time),
        },
    }
    extension.updated_at = now
    current = report.sequence_number == extension.sequence_number
    if not current or report.status not in TERMINAL_STATUSES:
        return Outcome(None, None, False)
    operation_id, failed = extension.operation_id, report.status == "error"
    extension.operation_id = None
    if extension.deleting and not failed:
        session.delete(extension)
        return Outcome(operation_id, None, True)
    extension.deleting = False
    extension.provisioning_state = FAILED if failed else SUCCEEDED
    error = (
        {
            "code": "ExtensionOperationFailed",
            "message": f"The handler of extension '{extension.name}' reported an error: {report.message}",
        }
        if failed
        else None
    )
    return Outcome(operation_id, error, False)


TIMED_OUT = "ExtensionOperationTimedOut"


def expire_overdue(
    session: Session, machine: Machine, now: dt.datetime, timeout: dt.timedelta
) -> list[tuple[str, dict[str, Any]]]:
    """The changes of ``machine``'s extensions that its extension service has not finished
    within ``timeout`` of their request (the machine is off, disconnected, or has no extd):
    each extension Failed, saying so. Returns (operation id, error) of each operation to end; a
    late report of the same sequence number still ends the extension as the machine says."""
    ended = []
    for extension in list_extensions(session, machine):
        if extension.provisioning_state not in (CREATING, UPDATING, DELETING) or not extension.operation_id:
            continue
        operation = session.get(Operation, extension.operation_id)
        if operation is None or operation.end_time is not None or operation.start_time > now - timeout:
            continue
        hours = timeout.total_seconds() / 3600
        limit = f"{hours:g} hours" if hours >= 1 else f"{timeout.total_seconds():g} seconds"
        message = (
            f"The machine '{machine.name}' did not act on this change of extension '{extension.name}' within"
            f" {limit} of the request: its extension service has not reported. Check that the machine is"
            " connected and that its extension service runs (azcmagent show), then send the request again."
        )
        extension.provisioning_state = FAILED
        extension.deleting = False
        extension.operation_id = None
        extension.updated_at = now
        extension.instance_view = {
            "name": extension.name,
            "type": extension.type,
            "typeHandlerVersion": extension.type_handler_version,
            "status": {
                "code": TIMED_OUT, "level": "Error", "displayStatus": DISPLAY["error"], "message": message,
                "time": iso8601(now),
            },
        }  # fmt: skip
        ended.append((operation.id, {"code": TIMED_OUT, "message": message}))
    return ended


def orphan_protected_settings(
    session: Session, machine: Machine, now: dt.datetime
) -> list[tuple[str | None, dict[str, Any]]]:
    """After a new extension certificate: the extensions whose protected settings were encrypted
    to another one cannot be run; they become Failed (the stored settings are dropped, they are
    of no use). The operations to end, with their error."""
    ended = []
    for extension in list_extensions(session, machine):
        thumbprint = extension.protected_settings_thumbprint
        if thumbprint is None or thumbprint == machine.extension_certificate_thumbprint:
            continue
        message = (
            f"The protected settings of extension '{extension.name}' were encrypted to the machine's earlier"
            " extension certificate, which it no longer has (a new one was registered): send the extension"
            " with its protected settings again."
        )
        extension.protected_settings = extension.protected_settings_thumbprint = None
        extension.protected_settings_digest = None
        extension.provisioning_state = FAILED
        extension.instance_view = {
            "name": extension.name,
            "type": extension.type,
            "typeHandlerVersion": extension.type_handler_version,
            "status": {
                "code": "1",
                "level": "Error",
                "displayStatus": DISPLAY["error"],
                "message": message,
                "time": iso8601(now),
            },
        }
        ended.append((extension.operation_id, {"code": "ExtensionProtectedSettingsLost", "message": message}))
        extension.operation_id = None
        extension.updated_at = now
    return ended


def resource_id(machine: Machine, extension: MachineExtension) -> str:
    return f"{machine.resource_id}/extensions/{extension.name}"


def extension_view(machine: Machine, extension: MachineExtension) -> dict[str, Any]:
    """The extension in ARM's shape. Protected settings are never in it."""
    properties: dict[str, Any] = {
        "publisher": extension.publisher,
        "type": extension.type,
        "typeHandlerVersion": extension.type_handler_version,
        "autoUpgradeMinorVersion": extension.auto_upgrade_minor_version,
        "enableAutomaticUpgrade": extension.enable_automatic_upgrade,
        "forceUpdateTag": extension.force_update_tag,
        "settings": extension.settings,
        "provisioningState": extension.provisioning_state,
        "instanceView": extension.instance_view,
    }
    return {
        "id": resource_id(machine, extension),
        "name": extension.name,
        "type": EXTENSION_TYPE,
        "location": machine.location,
        "tags": dict(extension.tags or {}),
        "properties": {key: value for key, value in properties.items() if value is not None},
    }


def goal_state(
    session: Session, machine: Machine, extensions: list[MachineExtension], public_url: str
) -> list[dict[str, Any]]:
    """What the agent's extension service must bring about, one entry per extension; ``package``
    says which published package (version, SHA-256, size, where to get it and its signature);
    empty when none serves the extension any more."""
    return [
        {
            "package": _package_of(session, extension, public_url),
            "name": extension.name,
            "publisher": extension.publisher,
            "type": extension.type,
            "typeHandlerVersion": extension.type_handler_version,
            "autoUpgradeMinorVersion": bool(extension.auto_upgrade_minor_version),
            "enableAutomaticUpgrade": bool(extension.enable_automatic_upgrade),
            "forceUpdateTag": extension.force_update_tag or "",
            "sequenceNumber": extension.sequence_number,
            "state": "deleted" if extension.deleting else "enabled",
            "settings": extension.settings,
            "protectedSettings": extension.protected_settings or "",
            "protectedSettingsCertThumbprint": extension.protected_settings_thumbprint or "",
        }
        for extension in extensions
    ]


def _package_of(session: Session, extension: MachineExtension, public_url: str) -> dict[str, Any]:
    packages = catalog.versions_of(session, extension.publisher, extension.type)
    chosen = catalog.resolve(
        packages, extension.type_handler_version, bool(extension.auto_upgrade_minor_version)
    )
    if chosen is None:
        return {}
    uri = catalog.package_uri(public_url, chosen)
    return {
        "version": chosen.version,
        "sha256": chosen.sha256,
        "size": chosen.size,
        "uri": uri,
        "signatureUri": uri + "/signature",
    }
