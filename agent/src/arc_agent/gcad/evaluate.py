"""One evaluation of an assignment (docs/machine-configuration.md, "Evaluations"): the package's
document with the assignment's parameters, each resource tested and, as the mode says, set and
tested again. Modes, exactly as the reference has them (case-sensitive): ``Audit`` only tests;
``ApplyAndMonitor`` sets on the first evaluation of an assignment (its hash), then only tests,
so drift is reported and left; ``ApplyAndAutoCorrect`` (and ``DeployAndAutoCorrect``, which
Azure's client still lists) sets at every evaluation. A resource the agent lacks, or whose
properties it cannot use, is NonCompliant with a reason naming it, never passed. Protected
parameters (decrypted by the caller) count as parameters, and their values are replaced by
``[protected]`` wherever the report would show them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from arc_agent.gcad import mof
from arc_agent.gcad.resources import SUCCESS, Host, Outcome, Reason, Resource, ResourceError, find

MODES = ("Audit", "ApplyAndMonitor", "ApplyAndAutoCorrect", "DeployAndAutoCorrect")
CORRECTING = ("ApplyAndAutoCorrect", "DeployAndAutoCorrect")
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
PROTECTED = "[protected]"


class PackageError(ValueError):
    """The package cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    package_type: str
    document: mof.Document


def read_package(data: bytes) -> Package:
    """The package in ``data`` (a zip: ``<Name>.mof`` and ``<Name>.metaconfig.json`` at its top)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
                raise PackageError("the package unpacks to more than 100 MB")
            names = [info.filename for info in infos]
            documents = [n for n in names if "/" not in n and n.lower().endswith(".mof")]
            if len(documents) != 1:
                raise PackageError(f"the package has {len(documents)} .mof documents at its top, not one")
            name = PurePosixPath(documents[0]).stem
            meta_name = next((n for n in names if n.lower() == f"{name}.metaconfig.json".lower()), None)
            if meta_name is None:
                raise PackageError(f"the package has no {name}.metaconfig.json")
            text = archive.read(documents[0]).decode("utf-8-sig")
            meta = json.loads(archive.read(meta_name).decode("utf-8-sig"))
    except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"the package cannot be read: {exc}") from None
    try:
        document = mof.parse(text)
    except mof.MofError as exc:
        raise PackageError(f"{name}.mof is not a configuration document: {exc}") from None
    fields = {str(k).lower(): v for k, v in meta.items()} if isinstance(meta, dict) else {}
    return Package(name, str(fields.get("version", "")), str(fields.get("type", "")), document)


def _converted(original: Any, value: str) -> Any:
    """A parameter's value (a string) as the type of the document's value."""
    if isinstance(original, bool):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(original, int):
        try:
            return int(value)
        except ValueError:
            return value
    if isinstance(original, list):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def with_parameters(
    document: mof.Document, parameters: Sequence[Mapping[str, str]]
) -> dict[str, dict[str, Any]]:
    """Each resource's properties (by lower-case ResourceID) with the parameters
    (``[Class]Name;Property``) in place of the document's values."""
    merged = {r.resource_id.lower(): dict(r.properties) for r in document.resources}
    for parameter in parameters:
        resource_id, _, prop = str(parameter.get("name", "")).rpartition(";")
        properties = merged.get(resource_id.lower())
        if properties is None:
            raise PackageError(f"the parameter {parameter.get('name')} names no resource of the document")
        known = {key.lower(): key for key in properties}
        key = known.get(prop.lower(), prop)
        properties[key] = _converted(properties.get(key), str(parameter.get("value", "")))
    return merged


@dataclass
class ResourceResult:
    resource_id: str
    compliant: bool
    reasons: list[Reason]
    found: dict[str, Any]
    corrected: bool = False

    def to_wire(self) -> dict[str, Any]:
        reasons = self.reasons or [Reason(SUCCESS, "")]
        return {
            "complianceStatus": "Compliant" if self.compliant else "NonCompliant",
            "resourceId": self.resource_id,
            "reasons": [reason.to_wire() for reason in reasons[:64]],
            "properties": self.found,
        }


@dataclass
class Evaluation:
    assignment: str
    assignment_hash: str
    configuration_version: str
    operation_type: str
    start: dt.datetime
    end: dt.datetime
    resources: list[ResourceResult] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    """The protected parameters' values, kept out of the report."""

    @property
    def compliant(self) -> bool:
        return all(result.compliant for result in self.resources)

    def report(self) -> dict[str, Any]:
        """The report as the agent API takes it (docs/agent-protocol.md, 5.10)."""
        return {
            "reportId": str(uuid.uuid4()),
            "assignmentHash": self.assignment_hash,
            "complianceStatus": "Compliant" if self.compliant else "NonCompliant",
            "operationType": self.operation_type,
            "jobId": str(uuid.uuid4()),
            "configurationVersion": self.configuration_version,
            "startTime": self.start.isoformat(),
            "endTime": self.end.isoformat(),
            "resources": _redacted([result.to_wire() for result in self.resources[:1024]], self.secrets),
        }


def _redacted(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` with every protected value in its strings replaced by ``[protected]``."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, PROTECTED)
        return value
    if isinstance(value, list):
        return [_redacted(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item, secrets) for key, item in value.items()}
    return value


def _one(
    resource: Resource | None, class_name: str, props: Mapping[str, Any], host: Host, apply: bool
) -> tuple[Outcome, bool]:
    if resource is None:
        return (
            Outcome(
                False,
                [
                    Reason(
                        "GuestConfiguration:UnknownResource",
                        f"this agent has no resource {class_name}: the"
                        " configuration cannot be evaluated on it (docs/machine-configuration.md lists them)",
                    )
                ],
            ),
            False,
        )
    try:
        outcome = resource.test(props, host)
        if outcome.compliant or not apply:
            return outcome, False
        resource.set(props, host)
        return resource.test(props, host), True
    except (ResourceError, OSError) as exc:
        return Outcome(False, [Reason(f"{class_name}:Error", str(exc))]), False


def evaluate(
    package: Package,
    assignment: Mapping[str, Any],
    *,
    initial: bool,
    remediate: bool,
    resources: Mapping[str, Resource],
    host: Host,
    clock: Any = None,
    protected: Sequence[Mapping[str, str]] = (),
    unreadable: str = "",
) -> Evaluation:
    """Evaluate ``assignment`` (the agent API's: name, assignmentHash, configuration) with
    ``package``. ``initial``: the first evaluation of this assignment hash; ``remediate``: False
    when the local policy forbids changes (then every mode only tests). ``protected``: the
    decrypted protected parameters; ``unreadable``: why they could not be decrypted (then
    nothing is set and every resource is NonCompliant saying so)."""
    now = clock or (lambda: dt.datetime.now(dt.timezone.utc))
    configuration = assignment["configuration"]
    mode = str(configuration.get("assignmentType") or "Audit")
    if mode not in MODES:
        raise PackageError(f"the assignmentType {mode!r} is not one of {', '.join(MODES[:3])}")
    apply = remediate and (mode in CORRECTING or (mode == "ApplyAndMonitor" and initial))
    given = [*(configuration.get("configurationParameter") or []), *protected]
    merged = with_parameters(package.document, given)
    evaluation = Evaluation(
        assignment=str(assignment["name"]),
        assignment_hash=str(assignment["assignmentHash"]),
        configuration_version=package.version or str(configuration.get("version", "")),
        operation_type="Initial" if initial else "Consistency",
        start=now(),
        end=now(),
        secrets=[str(p.get("value", "")) for p in protected if p.get("value")],
    )
    for declared in package.document.resources:
        if unreadable:
            reason = Reason("GuestConfiguration:ProtectedParameters", f"protected parameters: {unreadable}")
            evaluation.resources.append(ResourceResult(declared.resource_id, False, [reason], {}))
            continue
        props = {
            k: v
            for k, v in merged[declared.resource_id.lower()].items()
            if k
            not in (
                "ResourceID",
                "ConfigurationName",
                "ModuleName",
                "ModuleVersion",
                "SourceInfo",
                "DependsOn",
            )
        }
        outcome, corrected = _one(
            find(resources, declared.class_name), declared.class_name, props, host, apply
        )
        evaluation.resources.append(
            ResourceResult(declared.resource_id, outcome.compliant, outcome.reasons, outcome.found, corrected)
        )
    evaluation.end = now()
    return evaluation
