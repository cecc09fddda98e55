"""Guest configuration assignments on machines and their reports (docs/machine-configuration.md).

An assignment names a published configuration package (``guestConfiguration.name`` and
``version``; ``contentUri`` and ``contentHash``, when given, must be that package's), how to
use it (``assignmentType``: ``Audit``, ``ApplyAndMonitor`` or ``ApplyAndAutoCorrect``,
case-sensitive; ``DeployAndAutoCorrect``, which Azure's clients still list, is taken as
``ApplyAndAutoCorrect``) and values for the document's properties (``configurationParameter``,
``[Class]Name;Property``), each checked against the package's document. Secret values go in
``configurationProtectedParameter``: checked the same way, kept only encrypted to the machine's
extension certificate (as extensions' protected settings), never returned (a read shows their
names). Its ``assignmentHash`` covers all of that (the protected values through an HMAC): a
change makes the assignment ``Pending`` again and bumps the machine's generation, which wakes
the agent's long-poll. The agent reports each evaluation; the newest report of the current hash
sets ``complianceStatus``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from arc_controlplane.db.tables import (
    ConfigurationPackage,
    GuestConfigurationAssignment,
    GuestConfigurationReport,
    Machine,
)
from arc_controlplane.errors import ArmError
from arc_controlplane.machines import configuration_packages, protected_settings
from arc_controlplane.machines.catalog import version_key
from arc_controlplane.machines.work import CONFIGURATION, bump

NAMESPACE = "Microsoft.GuestConfiguration"
TYPE = f"{NAMESPACE}/guestConfigurationAssignments"
ASSIGNMENT_TYPES = ("Audit", "ApplyAndMonitor", "ApplyAndAutoCorrect", "DeployAndAutoCorrect")
APPLYING = frozenset(ASSIGNMENT_TYPES[1:])
COMPLIANCE = ("Compliant", "NonCompliant", "Pending")
OPERATION_TYPES = ("Initial", "Consistency")
REPORTS_KEPT = 100
MAX_PARAMETERS = 256
PARAMETER = re.compile(
    r"^(?P<resource>\[[A-Za-z_][A-Za-z0-9_]*\][^;]+);(?P<property>[A-Za-z_][A-Za-z0-9_]*)$"
)


@dataclass(frozen=True)
class AssignmentRequest:
    """What a PUT asks (``guestConfiguration`` and ``context``), as given."""

    name: str | None
    version: str | None
    content_uri: str | None
    content_hash: str | None
    assignment_type: str | None
    parameters: list[tuple[str, str]]
    context: str | None
    protected: list[tuple[str, str]] = field(default_factory=list)
    """``configurationProtectedParameter``: secret values, never stored in plain text."""


def assignment_id(machine: Machine, name: str) -> str:
    return f"{machine.resource_id}/providers/{TYPE}/{name}"


def report_id(machine: Machine, assignment: GuestConfigurationAssignment, report: str) -> str:
    return f"{assignment_id(machine, assignment.name)}/reports/{report}"


def not_found(machine: Machine, name: str) -> ArmError:
    return ArmError(
        404,
        "GuestConfigurationAssignmentNotFound",
        f"The guest configuration assignment '{name}' was not found on the machine '{machine.name}'.",
    )


def find_assignment(
    session: Session, machine: Machine, name: str, *, for_update: bool = False
) -> GuestConfigurationAssignment | None:
    query = select(GuestConfigurationAssignment).where(
        GuestConfigurationAssignment.machine_id == machine.id,
        GuestConfigurationAssignment.name_lower == name.lower(),
    )
    return session.scalars(query.with_for_update() if for_update else query).first()


def list_assignments(session: Session, machine: Machine) -> list[GuestConfigurationAssignment]:
    query = select(GuestConfigurationAssignment).where(GuestConfigurationAssignment.machine_id == machine.id)
    return list(session.scalars(query.order_by(GuestConfigurationAssignment.id)))


def _invalid(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)


def _package(session: Session, request: AssignmentRequest, public_url: str) -> ConfigurationPackage:
    """The published package the request names; 400 naming the problem otherwise."""
    if not request.name:
        raise _invalid(
            "InvalidGuestConfiguration",
            "properties.guestConfiguration.name is required: the name of a published configuration package.",
        )
    versions = configuration_packages.versions_of(session, request.name)
    if request.version:
        asked = version_key(request.version)
        matching = [p for p in versions if version_key(p.version)[: len(asked)] == asked] if asked else []
        package = matching[-1] if matching else None
    else:
        package = versions[-1] if versions else None
    if package is None:
        published = ", ".join(p.version for p in versions) or "none"
        raise _invalid(
            "ConfigurationPackageNotFound",
            f"The configuration package '{request.name}'"
            + (f" version {request.version}" if request.version else "")
            + f" is not published (published versions: {published}); publish it with"
            " 'arc-controlplane configuration publish PACKAGE.zip'.",
        )
    if request.content_uri:
        expected = configuration_packages.package_uri(public_url, package.name, package.version)
        if request.content_uri.split("?", 1)[0].lower() != expected.lower():
            raise _invalid(
                "InvalidContentUri",
                f"properties.guestConfiguration.contentUri must be where this control plane serves the"
                f" package, {expected} (or be left out); '{request.content_uri[:200]}' is not.",
            )
    if request.content_hash and request.content_hash.lower() != package.sha256:
        raise _invalid(
            "ContentHashMismatch",
            f"properties.guestConfiguration.contentHash {request.content_hash[:80]} is not the SHA-256 of"
            f" {package.name} {package.version} ({package.sha256.upper()}): the package is not the one"
            " that was published.",
        )
    return package


def _parameters(
    package: ConfigurationPackage, parameters: list[tuple[str, str]], seen: set[str] | None = None
) -> list[dict[str, str]]:
    """The parameters, each naming a resource of the document and one of its properties (and
    none named in ``seen``, the names already given)."""
    if len(parameters) > MAX_PARAMETERS:
        raise _invalid("InvalidConfigurationParameter", f"At most {MAX_PARAMETERS} configuration parameters.")
    resources = {str(r["resourceId"]).lower(): r for r in package.resources}
    checked: list[dict[str, str]] = []
    seen = set() if seen is None else seen
    for name, value in parameters:
        match = PARAMETER.fullmatch(name)
        if match is None:
            raise _invalid(
                "InvalidConfigurationParameter",
                f"The configuration parameter '{name[:200]}' is not of the form '[Class]Name;Property'.",
            )
        resource = resources.get(match["resource"].lower())
        if resource is None:
            known = ", ".join(str(r["resourceId"]) for r in package.resources) or "none"
            raise _invalid(
                "InvalidConfigurationParameter",
                f"The configuration parameter '{name[:200]}' names the resource {match['resource'][:200]},"
                f" which is not in {package.name} {package.version} (its resources: {known}).",
            )
        properties = {str(p).lower(): str(p) for p in resource["properties"]}
        if match["property"].lower() not in properties:
            raise _invalid(
                "InvalidConfigurationParameter",
                f"The configuration parameter '{name[:200]}': {resource['resourceId']} has no property"
                f" {match['property']} (it has {', '.join(sorted(properties.values()))}).",
            )
        if name.lower() in seen:
            raise _invalid(
                "InvalidConfigurationParameter",
                f"The configuration parameter '{name}' is given twice (a name is either in"
                " configurationParameter or in configurationProtectedParameter, once).",
            )
        seen.add(name.lower())
        checked.append({"name": name, "value": value})
    return checked


def resolve(session: Session, request: AssignmentRequest, public_url: str) -> dict[str, Any]:
    """The ``guestConfiguration`` to store: the package and parameters checked, the content's URI
    and hash filled in, the protected parameters' names only. ArmError 400 naming what is wrong."""
    assignment_type = request.assignment_type or "Audit"
    if assignment_type not in ASSIGNMENT_TYPES:
        raise _invalid(
            "InvalidAssignmentType",
            f"properties.guestConfiguration.assignmentType '{assignment_type[:64]}' is not one of"
            f" {', '.join(ASSIGNMENT_TYPES[:3])} (the names are case-sensitive).",
        )
    package = _package(session, request, public_url)
    if assignment_type in APPLYING and package.package_type != "AuditAndSet":
        raise _invalid(
            "InvalidAssignmentType",
            f"{package.name} {package.version} is an Audit package (its metaconfig's Type): it can only be"
            f" assigned with assignmentType Audit, not {assignment_type}.",
        )
    seen: set[str] = set()
    parameters = _parameters(package, request.parameters, seen)
    protected = _parameters(package, request.protected, seen)
    configuration = {
        "name": package.name,
        "version": package.version,
        "contentUri": configuration_packages.package_uri(public_url, package.name, package.version),
        "contentHash": package.sha256.upper(),
        "assignmentType": assignment_type,
        "configurationParameter": parameters,
        "kind": "DSC",
    }
    if protected:
        configuration["configurationProtectedParameter"] = [{"name": p["name"]} for p in protected]
    return configuration


def hash_of(configuration: dict[str, Any], protected_digest: str | None = None) -> str:
    """``assignmentHash``: SHA-256 (upper-case hex) of what the machine must evaluate (the
    protected values through their HMAC, ``protected_digest``)."""
    covered = {key: configuration[key] for key in ("name", "version", "contentHash", "assignmentType")}
    covered["configurationParameter"] = sorted(
        (p["name"].lower(), p["value"]) for p in configuration["configurationParameter"]
    )
    if protected_digest:
        covered["configurationProtectedParameter"] = protected_digest
    return hashlib.sha256(json.dumps(covered, sort_keys=True).encode("utf-8")).hexdigest().upper()


@dataclass(frozen=True)
class Put:
    assignment: GuestConfigurationAssignment
    created: bool
    changed: bool


def _not_ready(machine: Machine) -> ArmError:
    return ArmError(
        409,
        "MachineNotReadyForProtectedParameters",
        f"The machine '{machine.name}' has no extension certificate yet, so protected configuration"
        " parameters cannot be encrypted for it (they are never kept in plain text). Connect the machine"
        " with an agent whose extension service runs (it registers the certificate), then send the"
        " request again, or give the values in configurationParameter if they are not secret.",
    )


def _seal(
    machine: Machine,
    existing: GuestConfigurationAssignment | None,
    protected: list[tuple[str, str]],
    digest_key: bytes,
) -> tuple[str | None, str | None, str | None]:
    """(envelope, thumbprint, HMAC) of the protected parameters: the existing envelope when the
    same values were sealed to the machine's current certificate, else a new one."""
    if not protected:
        return None, None, None
    values = {"configurationProtectedParameter": sorted([name.lower(), value] for name, value in protected)}
    digest = protected_settings.digest(values, digest_key)
    if (
        existing is not None
        and existing.protected_parameters_digest == digest
        and existing.protected_parameters_thumbprint == machine.extension_certificate_thumbprint
    ):
        return existing.protected_parameters, existing.protected_parameters_thumbprint, digest
    if not machine.extension_certificate_pem:
        raise _not_ready(machine)
    certificate = protected_settings.load_extension_certificate(machine.extension_certificate_pem)
    sealed = {"configurationProtectedParameter": [{"name": n, "value": v} for n, v in protected]}
    return protected_settings.encrypt(sealed, certificate), machine.extension_certificate_thumbprint, digest


def put_assignment(
    session: Session,
    machine: Machine,
    name: str,
    request: AssignmentRequest,
    public_url: str,
    now: dt.datetime,
    digest_key: bytes = b"",
) -> Put:
    """Create or replace the assignment ``name``; a change of what the machine evaluates makes it
    Pending and bumps the machine's generation (the caller wakes the agent). ``digest_key``: the
    HMAC key of protected parameters (protected_settings.digest_key)."""
    configuration = resolve(session, request, public_url)
    existing = find_assignment(session, machine, name, for_update=True)
    envelope, thumbprint, protected_digest = _seal(machine, existing, request.protected, digest_key)
    digest = hash_of(configuration, protected_digest)
    if existing is None:
        existing = GuestConfigurationAssignment(
            machine_id=machine.id,
            name=name,
            name_lower=name.lower(),
            configuration=configuration,
            context=request.context,
            assignment_hash=digest,
            compliance_status="Pending",
            provisioning_state="Succeeded",
            protected_parameters=envelope,
            protected_parameters_thumbprint=thumbprint,
            protected_parameters_digest=protected_digest,
            created_at=now,
            updated_at=now,
        )
        session.add(existing)
        bump(machine, CONFIGURATION)
        return Put(existing, created=True, changed=True)
    changed = existing.assignment_hash != digest or existing.protected_parameters != envelope
    if changed:
        existing.configuration = configuration
        existing.assignment_hash = digest
        existing.compliance_status = "Pending"
        existing.protected_parameters = envelope
        existing.protected_parameters_thumbprint = thumbprint
        existing.protected_parameters_digest = protected_digest
        bump(machine, CONFIGURATION)
    if changed or existing.context != request.context:
        existing.context = request.context
        existing.updated_at = now
    return Put(existing, created=False, changed=changed)


def delete_assignment(session: Session, machine: Machine, assignment: GuestConfigurationAssignment) -> None:
    """Remove it (and its reports); the agent, woken, stops evaluating it."""
    session.delete(assignment)
    bump(machine, CONFIGURATION)


def latest_report(
    session: Session, assignment: GuestConfigurationAssignment
) -> GuestConfigurationReport | None:
    if assignment.latest_report_id is None:
        return None
    return session.get(GuestConfigurationReport, assignment.latest_report_id)


def list_reports(
    session: Session, assignment: GuestConfigurationAssignment
) -> list[GuestConfigurationReport]:
    """Newest first."""
    query = select(GuestConfigurationReport).where(GuestConfigurationReport.assignment_id == assignment.id)
    return list(session.scalars(query.order_by(GuestConfigurationReport.end_time.desc())))


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def report_view(
    machine: Machine, assignment: GuestConfigurationAssignment, report: GuestConfigurationReport
) -> dict[str, Any]:
    """A report in Azure's shape (``GuestConfigurationAssignmentReport``)."""
    return {
        "id": report_id(machine, assignment, report.id),
        "name": report.id,
        "properties": {
            "complianceStatus": report.compliance_status,
            "reportId": report.id,
            "assignment": {
                "name": assignment.name,
                "configuration": {
                    "name": assignment.configuration["name"],
                    "version": report.configuration_version,
                },
            },
            "vm": {"id": machine.resource_id, "uuid": machine.vm_id},
            "startTime": _time(report.start_time),
            "endTime": _time(report.end_time),
            "details": {
                "jobId": report.job_id,
                "operationType": report.operation_type,
                "complianceStatus": report.compliance_status,
                "startTime": _time(report.start_time),
                "endTime": _time(report.end_time),
                "resources": report.resources,
            },
        },
    }


def assignment_view(
    machine: Machine, assignment: GuestConfigurationAssignment, report: GuestConfigurationReport | None
) -> dict[str, Any]:
    """An assignment in Azure's shape (``GuestConfigurationAssignment``)."""
    properties: dict[str, Any] = {
        "targetResourceId": machine.resource_id,
        "guestConfiguration": {
            **assignment.configuration,
            "contentType": "Custom",
            "configurationSetting": {},
        },
        "complianceStatus": assignment.compliance_status,
        "assignmentHash": assignment.assignment_hash,
        "provisioningState": assignment.provisioning_state,
        "resourceType": "Microsoft.HybridCompute/machines",
    }
    if assignment.context is not None:
        properties["context"] = assignment.context
    if assignment.last_compliance_status_checked is not None:
        properties["lastComplianceStatusChecked"] = _time(assignment.last_compliance_status_checked)
    if report is not None:
        properties["latestReportId"] = report_id(machine, assignment, report.id)
        latest = report_view(machine, assignment, report)["properties"]
        properties["latestAssignmentReport"] = {
            "id": report_id(machine, assignment, report.id),
            "reportId": report.id,
            "assignment": latest["assignment"],
            "vm": latest["vm"],
            "startTime": latest["startTime"],
            "endTime": latest["endTime"],
            "complianceStatus": report.compliance_status,
            "operationType": report.operation_type,
            "resources": report.resources,
        }
    return {
        "id": assignment_id(machine, assignment.name),
        "name": assignment.name,
        "location": machine.location,
        "type": TYPE,
        "properties": properties,
    }


@dataclass(frozen=True)
class Report:
    """An evaluation as the agent reports it (api/agent/guest_configuration.py checks the shape)."""

    report_id: str
    assignment_hash: str
    compliance_status: str
    operation_type: str
    job_id: str
    configuration_version: str
    start_time: dt.datetime
    end_time: dt.datetime
    resources: list[dict[str, Any]]


@dataclass(frozen=True)
class Recorded:
    recorded: bool
    """False when the report was known already (sent again)."""
    current: bool
    """Whether it set the assignment's compliance."""


def record_report(
    session: Session, assignment: GuestConfigurationAssignment, report: Report, now: dt.datetime
) -> Recorded:
    """Keep ``report`` (once: a report sent again is known by its id); the newest report of the
    assignment's current hash sets its compliance."""
    known = session.get(GuestConfigurationReport, report.report_id)
    if known is not None:
        if known.assignment_id != assignment.id:
            raise ArmError(
                409, "ReportIdTaken", f"The report id {report.report_id} belongs to another assignment."
            )
        return Recorded(recorded=False, current=False)
    session.add(
        GuestConfigurationReport(
            id=report.report_id,
            assignment_id=assignment.id,
            assignment_hash=report.assignment_hash,
            compliance_status=report.compliance_status,
            operation_type=report.operation_type,
            job_id=report.job_id,
            configuration_version=report.configuration_version,
            start_time=report.start_time,
            end_time=report.end_time,
            resources=report.resources,
            received_at=now,
        )
    )
    session.flush()
    current = report.assignment_hash.upper() == assignment.assignment_hash
    checked = assignment.last_compliance_status_checked
    newest = checked is None or report.end_time >= checked
    if current and newest:
        assignment.compliance_status = report.compliance_status
        assignment.latest_report_id = report.report_id
        assignment.last_compliance_status_checked = report.end_time
    _prune(session, assignment)
    return Recorded(recorded=True, current=current and newest)


def _prune(session: Session, assignment: GuestConfigurationAssignment) -> None:
    """Keep the newest REPORTS_KEPT reports of the assignment (and always its latest)."""
    keep = select(GuestConfigurationReport.id).where(GuestConfigurationReport.assignment_id == assignment.id)
    keep = keep.order_by(GuestConfigurationReport.end_time.desc()).limit(REPORTS_KEPT)
    kept = set(session.scalars(keep))
    if assignment.latest_report_id:
        kept.add(assignment.latest_report_id)
    session.execute(
        delete(GuestConfigurationReport).where(
            GuestConfigurationReport.assignment_id == assignment.id,
            GuestConfigurationReport.id.not_in(sorted(kept)),
        )
    )


def agent_assignment(
    session: Session, assignment: GuestConfigurationAssignment, public_url: str
) -> dict[str, Any]:
    """What the agent needs of an assignment: what to evaluate and the package to fetch."""
    configuration = assignment.configuration
    package = configuration_packages.find(session, configuration["name"], configuration["version"])
    described: dict[str, Any] = {
        "name": assignment.name,
        "assignmentHash": assignment.assignment_hash,
        "configuration": {
            key: configuration[key] for key in ("name", "version", "assignmentType", "configurationParameter")
        },
        "package": None,
    }
    if assignment.protected_parameters:
        described["configuration"]["protectedParameters"] = assignment.protected_parameters
        described["configuration"]["protectedParametersCertThumbprint"] = (
            assignment.protected_parameters_thumbprint
        )
    if package is not None:
        described["package"] = {
            "uri": configuration_packages.package_uri(public_url, package.name, package.version),
            "sha256": package.sha256,
            "size": package.size,
            "signature": package.signature,
        }
    return described
