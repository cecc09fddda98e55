"""What the admin commands print: one JSON object with ``--json``, else text for people.

JSON keys are camelCase and shared between commands where they mean the same thing:
``url``, ``caCertificate``, ``tenantId``, ``subscriptionId``, ``resourceGroup``, ``clientId``,
``clientSecret``. Secrets appear only in the output of the command that made them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arc_controlplane.admin.audit_log import AuditRow
from arc_controlplane.admin.fleet import Fleet, MachineRow
from arc_controlplane.admin.initialise import InitResult
from arc_controlplane.admin.principals import Assignment, CreatedPrincipal, PrincipalInfo
from arc_controlplane.db.tables import AgentPackage, ConfigurationPackage, ExtensionPackage
from arc_controlplane.machines import configuration_packages
from arc_controlplane.machines.rollout import Plan, finished

SECRET_NOTICE = "The client secret is shown only this once: store it now (it is kept only as a hash)."  # noqa: S105 - a notice


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_json(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2) + "\n"


def printable(text: str) -> str:
    """``text`` with control characters escaped: names and targets come from API callers too."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart; cells made printable."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines) + "\n"


def _assignment_json(assignment: Assignment) -> dict[str, Any]:
    return {
        "id": assignment.id,
        "role": assignment.role,
        "scope": assignment.scope,
        "objectId": assignment.object_id,
        "clientId": assignment.client_id,
        "principalName": assignment.principal_name,
        "principalKind": assignment.principal_kind,
        "createdAt": timestamp(assignment.created_at),
    }


def _principal_json(info: PrincipalInfo) -> dict[str, Any]:
    return {
        "clientId": info.client_id,
        "objectId": info.object_id,
        "displayName": info.display_name,
        "kind": info.kind,
        "tenantId": info.tenant_id,
        "credential": info.credential,
        "createdAt": timestamp(info.created_at),
        "roles": [{"role": role.role, "scope": role.scope} for role in info.roles],
    }


def init_json(result: InitResult) -> dict[str, Any]:
    state = result.state
    return {
        "url": state.url,
        "caCertificate": str(result.ca_file),
        "tenantId": state.tenant_id,
        "subscriptionId": state.subscription_id,
        "resourceGroup": state.resource_group,
        "location": state.location,
        "clientId": state.client_id,
        "clientSecret": result.client_secret,
        "created": result.created,
    }


def init_text(result: InitResult, data_dir: Path) -> str:
    state = result.state
    head = (
        f"Initialised the control plane in {data_dir}."
        if result.created
        else (f"The control plane in {data_dir} is already initialised; nothing was changed.")
    )
    lines = [
        head,
        f"  URL:               {state.url}",
        f"  CA certificate:    {result.ca_file}",
        f"  Tenant id:         {state.tenant_id}",
        f"  Subscription id:   {state.subscription_id}",
        f"  Resource group:    {state.resource_group} ({state.location})",
        f"  Onboarding client: {state.client_id} (service principal 'arc-onboarding', role Onboarding)",
    ]
    if result.client_secret is not None:
        lines += [f"  Client secret:     {result.client_secret}", SECRET_NOTICE]
    return "\n".join(lines) + "\n"


def created_json(created: CreatedPrincipal, url: str | None, ca_file: Path | None) -> dict[str, Any]:
    info = created.info
    return {
        "url": url,
        "caCertificate": str(ca_file) if ca_file else None,
        "tenantId": info.tenant_id,
        "subscriptionId": created.scope.subscription_id,
        "resourceGroup": created.scope.resource_group,
        "clientId": info.client_id,
        "clientSecret": created.client_secret,
        "objectId": info.object_id,
        "displayName": info.display_name,
        "role": info.roles[0].role,
        "scope": created.scope.value,
        "certificateThumbprints": list(created.thumbprints),
    }


def created_text(created: CreatedPrincipal) -> str:
    info = created.info
    lines = [
        f"Created service principal {info.display_name!r} with role {info.roles[0].role!r} "
        f"at {created.scope.value}.",
        f"  Tenant id:      {info.tenant_id}",
        f"  Client id:      {info.client_id}",
        f"  Object id:      {info.object_id}",
    ]
    if created.client_secret is not None:
        lines += [f"  Client secret:  {created.client_secret}", SECRET_NOTICE]
    else:
        lines.append(f"  Certificates:   {', '.join(created.thumbprints)} (SHA-1 thumbprints)")
    return "\n".join(lines) + "\n"


def principals_json(principals: list[PrincipalInfo]) -> dict[str, Any]:
    return {"servicePrincipals": [_principal_json(info) for info in principals]}


def principals_text(principals: list[PrincipalInfo]) -> str:
    if not principals:
        return "No service principals.\n"
    rows = [
        [
            info.client_id,
            info.object_id,
            info.display_name,
            info.kind,
            "; ".join(f"{role.role} at {role.scope}" for role in info.roles) or "-",
        ]
        for info in principals
    ]
    return table(["CLIENT ID", "OBJECT ID", "NAME", "KIND", "ROLES"], rows)


def deleted_json(info: PrincipalInfo) -> dict[str, Any]:
    return {**_principal_json(info), "deleted": True}


def deleted_text(info: PrincipalInfo) -> str:
    return (
        f"Deleted service principal {info.display_name!r} ({info.client_id}) and its "
        f"{len(info.roles)} role assignment(s).\n"
    )


def assigned_json(assignment: Assignment, created: bool) -> dict[str, Any]:
    return {"roleAssignment": _assignment_json(assignment), "created": created}


def assigned_text(assignment: Assignment, created: bool) -> str:
    what = "Assigned" if created else "Already assigned:"
    who = f"{assignment.principal_name!r} ({assignment.client_id})"
    return f"{what} {assignment.role!r} to {who} at {assignment.scope}.\n"


def assignments_json(assignments: list[Assignment]) -> dict[str, Any]:
    return {"roleAssignments": [_assignment_json(assignment) for assignment in assignments]}


def assignments_text(assignments: list[Assignment]) -> str:
    if not assignments:
        return "No role assignments.\n"
    rows = [[a.role, a.scope, a.principal_name, a.client_id, a.principal_kind] for a in assignments]
    return table(["ROLE", "SCOPE", "PRINCIPAL", "CLIENT ID", "KIND"], rows)


def _entry_json(entry: AuditRow) -> dict[str, Any]:
    return {
        "time": timestamp(entry.time),
        "principal": entry.principal,
        "principalId": entry.principal_id,
        "action": entry.action,
        "target": entry.target,
        "result": entry.result,
        "detail": entry.detail,
    }


def audit_json(entries: list[AuditRow]) -> dict[str, Any]:
    return {"entries": [_entry_json(entry) for entry in entries]}


def audit_text(entries: list[AuditRow]) -> str:
    if not entries:
        return "The audit log is empty.\n"
    rows = [[timestamp(e.time), e.principal, e.action, e.target, e.result] for e in entries]
    return table(["TIME", "PRINCIPAL", "ACTION", "TARGET", "RESULT"], rows)


def _machine_json(row: MachineRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "resourceGroup": row.resource_group,
        "subscriptionId": row.subscription_id,
        "resourceId": row.resource_id,
        "status": row.status,
        "statusReason": row.status_reason,
        "agentVersion": row.agent_version,
        "lastHeartbeat": timestamp(row.last_heartbeat) if row.last_heartbeat else None,
        "lastStatusChange": timestamp(row.last_status_change),
    }


def machines_json(fleet: Fleet) -> dict[str, Any]:
    return {"machines": [_machine_json(row) for row in fleet.machines]}


def _no_machines(fleet: Fleet) -> str:
    selection = fleet.selection
    if fleet.missing is not None:
        where = " here"
        if selection.subscription_id is not None and not fleet.missing.startswith("subscription"):
            where = f" in subscription {selection.subscription_id}"
        return (
            f"No machines: there is no {fleet.missing}{where}; check the name, or leave the filter out "
            "to list every machine.\n"
        )
    within = []
    if selection.resource_group is not None:
        within.append(f"resource group {selection.resource_group!r}")
    if selection.subscription_id is not None:
        within.append(f"subscription {selection.subscription_id}")
    if within:
        return f"No machines in {' of '.join(within)}.\n"
    return (
        "No machines yet: create one through the management API (Machines_CreateOrUpdate) or "
        "onboard one with 'azcmagent connect'.\n"
    )


def machines_text(fleet: Fleet) -> str:
    if not fleet.machines:
        return _no_machines(fleet)
    rows = [
        [
            row.name,
            row.resource_group,
            f"{row.status} ({row.status_reason})" if row.status_reason else row.status,
            row.agent_version or "-",
            timestamp(row.last_heartbeat) if row.last_heartbeat else "-",
        ]
        for row in fleet.machines
    ]
    return table(["NAME", "RESOURCE GROUP", "STATUS", "AGENT VERSION", "LAST HEARTBEAT"], rows)


@dataclass(frozen=True)
class PackageRow:
    publisher: str
    type: str
    version: str
    sha256: str
    size: int
    published_at: dt.datetime


def package_row(package: ExtensionPackage) -> PackageRow:
    """What the commands print of a package (read inside the session)."""
    return PackageRow(
        package.publisher, package.type, package.version, package.sha256, package.size, package.published_at
    )


def package_json(row: PackageRow) -> dict[str, Any]:
    return {
        "publisher": row.publisher,
        "type": row.type,
        "version": row.version,
        "sha256": row.sha256,
        "size": row.size,
        "publishedAt": timestamp(row.published_at),
    }


def packages_text(rows: Sequence[PackageRow], done: str = "") -> str:
    if not rows:
        return "No extension packages are published ('arc-controlplane extension publish PACKAGE.zip ...').\n"
    listed = table(
        ["PUBLISHER", "TYPE", "VERSION", "SHA-256", "SIZE", "PUBLISHED"],
        [[r.publisher, r.type, r.version, r.sha256, str(r.size), timestamp(r.published_at)] for r in rows],
    )
    return f"{done}:\n{listed}" if done else listed


@dataclass(frozen=True)
class AgentPackageRow:
    version: str
    target: str
    archive: str
    sha256: str
    size: int
    published_at: dt.datetime


def agent_package_rows(packages: Sequence[AgentPackage]) -> list[AgentPackageRow]:
    """What the commands print of agent packages (read inside the session)."""
    return [
        AgentPackageRow(p.version, p.target, p.archive, p.sha256, p.size, p.published_at) for p in packages
    ]


def agent_packages_json(rows: Sequence[AgentPackageRow]) -> dict[str, Any]:
    return {
        "packages": [
            {
                "version": row.version,
                "target": row.target,
                "archive": row.archive,
                "sha256": row.sha256,
                "size": row.size,
                "publishedAt": timestamp(row.published_at),
            }
            for row in rows
        ]
    }


def agent_packages_text(rows: Sequence[AgentPackageRow], done: str = "") -> str:
    if not rows:
        return "No agent packages are published ('arc-controlplane agent publish BUNDLE_DIR').\n"
    listed = table(
        ["VERSION", "TARGET", "SHA-256", "SIZE", "PUBLISHED"],
        [[r.version, r.target, r.sha256, str(r.size), timestamp(r.published_at)] for r in rows],
    )
    return f"{done}:\n{listed}" if done else listed


def rollout_json(plan: Plan) -> dict[str, Any]:
    version = plan.version or ""
    return {
        "version": plan.version,
        "batches": [
            {
                "offered": batch.offered,
                "machines": [
                    {"name": m.name, "version": m.version, "done": finished(m, version)}
                    for m in batch.machines
                ],
            }
            for batch in plan.batches
        ],
        "halted": [{"version": v, "reason": why} for v, why in plan.halted.items()],
    }


def rollout_text(plan: Plan) -> str:
    lines = []
    for version, why in plan.halted.items():
        lines.append(f"Halted: {version}: {why}")
    if plan.version is None:
        lines.append(
            "No version is rolled out: "
            + ("every published version is halted." if plan.halted else "no agent version is published.")
        )
        return "\n".join(lines) + "\n"
    if not plan.batches:
        lines.append(f"Rolling out {plan.version}: no machine has automatic upgrades.")
        return "\n".join(lines) + "\n"
    lines.append(f"Rolling out {plan.version}:")
    rows = []
    for number, batch in enumerate(plan.batches, 1):
        done = batch.done(plan.version)
        rows.append([
            str(number) + (" (canary)" if number == 1 else ""),
            "offered" if batch.offered else "waiting",
            f"{len(done)}/{len(batch.machines)}",
            ", ".join(m.name for m in batch.machines[:5]) + (" ..." if len(batch.machines) > 5 else ""),
        ])  # fmt: skip
    lines.append(table(["BATCH", "STATE", "DONE", "MACHINES"], rows).rstrip("\n"))
    return "\n".join(lines) + "\n"


def configuration_packages_json(packages: Sequence[ConfigurationPackage]) -> dict[str, Any]:
    return {"packages": [configuration_packages.describe(package) for package in packages]}


def configuration_packages_text(packages: Sequence[ConfigurationPackage], done: str = "") -> str:
    if not packages:
        return "No configuration packages are published ('arc-controlplane configuration publish PKG.zip').\n"
    listed = table(
        ["NAME", "VERSION", "TYPE", "SHA-256", "RESOURCES", "PUBLISHED"],
        [
            [p.name, p.version, p.package_type, p.sha256, str(len(p.resources)), timestamp(p.published_at)]
            for p in packages
        ],
    )
    return f"{done}:\n{listed}" if done else listed
