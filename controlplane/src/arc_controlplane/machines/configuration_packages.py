"""The machine configuration package store (docs/machine-configuration.md, "Packages").

A package is what ``New-GuestConfigurationPackage`` makes (docs/reference/machine-configuration.md):
a zip without a root folder holding the compiled document ``<Name>.mof``, the metaconfig
``<Name>.metaconfig.json`` (``Type``: ``Audit`` or ``AuditAndSet``; ``Version``) and, for Windows
and PowerShell DSC, ``Modules/``. ``arc-controlplane configuration publish PACKAGE.zip`` checks it
(at most 100 MB unpacked, no member outside its folder, one document that parses, a metaconfig
of its name), keeps it as ``<packages>/configuration/<sha256>.zip`` and signs ``{name, version,
sha256, size}`` with the package-signing key. The document's resources are kept with the row, so
that an assignment's ``configurationParameter`` can be checked before it is accepted. Agents
download a package as the machine and check its SHA-256 (the assignment's ``contentHash``) and
signature before evaluating anything of it.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.auth.keys import PackageSigningKey
from arc_controlplane.db.tables import ConfigurationPackage
from arc_controlplane.machines import mof
from arc_controlplane.machines.catalog import (
    PackageError,
    check_name,
    check_version,
    file_digest,
    keep,
    safe_members,
    sign,
    version_key,
)

SIGNATURE_TYPE = "hybridops-arc-configuration-package+jws"
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
MAX_MEMBERS = 10_000
PACKAGE_TYPES = ("Audit", "AuditAndSet")
PACKAGES_PATH = "/agent/v1/configurationPackages"
"""Where the agent API serves packages (api/agent/guest_configuration.py; docs/agent-protocol.md)."""


def package_uri(public_url: str, name: str, version: str) -> str:
    """The ``contentUri`` of a published package: where its machines download it."""
    return f"{public_url}{PACKAGES_PATH}/{name}/{version}/{name}.zip"


def package_file(packages_dir: Path, package: ConfigurationPackage) -> Path:
    return packages_dir / "configuration" / f"{package.sha256}.zip"


@dataclass(frozen=True)
class PackageContent:
    name: str
    version: str
    package_type: str
    resources: list[dict[str, Any]]
    """Each resource of the document: ``resourceId``, ``class`` and its ``properties`` (names)."""


def _member(archive: zipfile.ZipFile, names: list[str], wanted: str) -> str | None:
    """The top-level member called ``wanted`` (case-insensitively, as the Windows tools write it)."""
    return next((n for n in names if n.lower() == wanted.lower()), None)


def read_package(path: Path) -> PackageContent:
    """What the package at ``path`` holds, checked; PackageError naming what is wrong otherwise."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = safe_members(archive, path, "the package's folder")
            if len(names) > MAX_MEMBERS:
                raise PackageError(f"{path} has {len(names)} members, more than {MAX_MEMBERS}")
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > MAX_UNPACKED_BYTES:
                raise PackageError(
                    f"{path} unpacks to {unpacked // (1024 * 1024)} MB, more than the"
                    f" {MAX_UNPACKED_BYTES // (1024 * 1024)} MB a machine configuration package may have"
                )
            documents = [n for n in names if "/" not in n and n.lower().endswith(".mof")]
            if len(documents) != 1:
                raise PackageError(
                    f"{path} has {len(documents)} .mof documents at its top, not one: a package holds the"
                    " compiled configuration <Name>.mof (without a root folder)"
                )
            name = PurePosixPath(documents[0]).stem
            metaconfig = _member(archive, names, f"{name}.metaconfig.json")
            if metaconfig is None:
                raise PackageError(
                    f"{path} has no {name}.metaconfig.json beside {documents[0]} (its Type and Version)"
                )
            text = archive.read(documents[0]).decode("utf-8-sig")
            meta = json.loads(archive.read(metaconfig).decode("utf-8-sig"))
    except zipfile.BadZipFile:
        raise PackageError(f"{path} is not a zip file") from None
    except UnicodeDecodeError as exc:
        raise PackageError(f"{path}: {exc.reason} in the document or the metaconfig (give UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise PackageError(f"{path}: {name}.metaconfig.json is not JSON ({exc})") from None
    try:
        document = mof.parse(text)
    except mof.MofError as exc:
        raise PackageError(f"{path}: {documents[0]} is not a configuration document: {exc}") from None
    if document.name.lower() != name.lower():
        raise PackageError(f"{path}: {documents[0]} configures {document.name!r}, not {name!r}")
    fields = {key.lower(): value for key, value in meta.items()} if isinstance(meta, dict) else {}
    package_type = str(fields.get("type") or "")
    version = str(fields.get("version") or "")
    if package_type not in PACKAGE_TYPES:
        raise PackageError(
            f"{path}: the metaconfig's Type is {package_type or 'missing'!r}; give Audit (it only audits) or"
            " AuditAndSet (it can also apply)"
        )
    check_name(name, "configuration name")
    check_version(version)
    resources = [
        {
            "resourceId": resource.resource_id,
            "class": resource.class_name,
            "properties": sorted(resource.properties),
        }
        for resource in document.resources
    ]
    return PackageContent(name, version, package_type, resources)


def _document_source(source: Path) -> tuple[str, str, str, str]:
    """(name, version, type, document text) of a package source: a JSON document (name,
    version, type, resources of type, name and properties), docs/machine-configuration.md."""
    try:
        spec = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PackageError(f"{source} is not JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise PackageError(f"{source}: give an object with name, version, type and resources")
    name, version = str(spec.get("name") or ""), str(spec.get("version") or "")
    package_type = str(spec.get("type") or "Audit")
    check_name(name, "configuration name")
    check_version(version)
    if package_type not in PACKAGE_TYPES:
        raise PackageError(f"{source}: type {package_type!r} is not Audit or AuditAndSet")
    resources = spec.get("resources")
    if not isinstance(resources, list) or not resources:
        raise PackageError(f"{source}: resources must list at least one resource")
    written = []
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict) or not isinstance(resource.get("properties", {}), dict):
            raise PackageError(
                f"{source}: resources[{index}] must be an object with type, name and properties"
            )
        class_name, resource_name = str(resource.get("type") or ""), str(resource.get("name") or "")
        if not mof.RESOURCE_ID.fullmatch(f"[{class_name}]{resource_name}"):
            raise PackageError(f"{source}: resources[{index}] needs a type (a class name) and a name")
        written.append((class_name, resource_name, dict(resource.get("properties") or {})))
    try:
        return name, version, package_type, mof.render(name, written, version)
    except mof.MofError as exc:
        raise PackageError(f"{source}: {exc}") from None


def build(source: Path, out_dir: Path) -> Path:
    """``out_dir/<Name>.zip`` made from the document ``source`` (checked as publish checks it):
    the same source always gives the same bytes, so its SHA-256 is stable."""
    name, version, package_type, text = _document_source(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    partial = out_dir / f".{name}.zip.partial"
    members = {
        f"{name}.mof": text.encode("utf-8"),
        f"{name}.metaconfig.json": json.dumps({"Type": package_type, "Version": version}, indent=2).encode(),
    }
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(info, data)
    read_package(partial)
    partial.replace(target)
    return target


def find(session: Session, name: str, version: str) -> ConfigurationPackage | None:
    return session.scalars(
        select(ConfigurationPackage).where(
            ConfigurationPackage.name_lower == name.lower(), ConfigurationPackage.version == version
        )
    ).first()


def versions_of(session: Session, name: str) -> list[ConfigurationPackage]:
    """The published versions of the configuration ``name``, oldest first."""
    rows = session.scalars(
        select(ConfigurationPackage).where(ConfigurationPackage.name_lower == name.lower())
    )
    return sorted(rows, key=lambda row: version_key(row.version))


def list_packages(session: Session) -> list[ConfigurationPackage]:
    rows = session.scalars(select(ConfigurationPackage))
    return sorted(rows, key=lambda row: (row.name_lower, version_key(row.version)))


def publish(
    session: Session, packages_dir: Path, key: PackageSigningKey, path: Path, now: dt.datetime
) -> ConfigurationPackage:
    """Check, keep and sign the package at ``path``; PackageError when it cannot be published."""
    content = read_package(path)
    if find(session, content.name, content.version) is not None:
        raise PackageError(
            f"{content.name} {content.version} is published already: remove it first ('arc-controlplane"
            f" configuration remove --name {content.name} --version {content.version}')"
        )
    sha256, size = file_digest(path)
    keep(packages_dir / "configuration", path, sha256, ".zip")
    claims = {"name": content.name, "version": content.version, "sha256": sha256, "size": size}
    row = ConfigurationPackage(
        name=content.name,
        name_lower=content.name.lower(),
        version=content.version,
        package_type=content.package_type,
        sha256=sha256,
        size=size,
        signature=sign(key, claims, SIGNATURE_TYPE),
        resources=content.resources,
        published_at=now,
    )
    session.add(row)
    session.flush()
    return row


def remove(session: Session, packages_dir: Path, name: str, version: str) -> ConfigurationPackage:
    """Remove a published package (its file too, when no other row shares it). Assignments that
    use it keep their machines' cached copy; new ones cannot name it."""
    row = find(session, name, version)
    if row is None:
        raise PackageError(f"{name} {version} is not published ('arc-controlplane configuration list')")
    session.delete(row)
    session.flush()
    shared = session.scalars(
        select(ConfigurationPackage.id).where(ConfigurationPackage.sha256 == row.sha256)
    ).first()
    if shared is None:
        package_file(packages_dir, row).unlink(missing_ok=True)
    return row


def describe(row: ConfigurationPackage, public_url: str = "") -> dict[str, Any]:
    """A published package as the CLI and the agent API show it."""
    described: dict[str, Any] = {
        "name": row.name,
        "version": row.version,
        "type": row.package_type,
        "sha256": row.sha256,
        "size": row.size,
        "resources": [resource["resourceId"] for resource in row.resources],
        "publishedAt": row.published_at.isoformat(),
    }
    if public_url:
        described["contentUri"] = package_uri(public_url, row.name, row.version)
    return described
