"""The extension catalogue: handler packages the operator publishes (docs/extensions.md).

A package is the zip of a VM extension handler, ``HandlerManifest.json`` at its top
(docs/reference/extensions.md). Publishing checks it, keeps it as ``<packages>/<sha256>.zip``
and signs ``{publisher, type, version, sha256, size}`` with the package-signing key (a JWS,
ES256): agents check both the SHA-256 and the signature before anything of it runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from arc_controlplane.auth.keys import PackageSigningKey
from arc_controlplane.db.tables import ExtensionPackage
from arc_controlplane.fsutil import ensure_private_dir

HANDLER_MANIFEST = "HandlerManifest.json"
MAX_PACKAGE_BYTES = 256 * 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024
SIGNATURE_TYPE = "hybridops-arc-extension-package+jws"
VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){1,3}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
COMMANDS = ("installCommand", "enableCommand", "disableCommand", "uninstallCommand", "updateCommand")


PACKAGES_PATH = "/agent/v1/extensionPackages"
"""Where the agent API serves packages (api/agent/extensions.py; docs/agent-protocol.md, 5.8)."""


def package_uri(public_url: str, package: ExtensionPackage) -> str:
    return f"{public_url}{PACKAGES_PATH}/{package.publisher}/{package.type}/{package.version}"


class PackageError(ValueError):
    """A package, or a request about one, that the catalogue refuses (the message says why)."""


def version_key(version: str) -> tuple[int, ...]:
    """The version's numbers (compared as numbers); () when it is not a version."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


def check_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise PackageError(
            f"the {what} {value[:64]!r} is not valid: letters, digits, '.', '-' and '_',"
            " starting with a letter or digit"
        )
    return value


def check_version(value: str) -> str:
    if not VERSION.fullmatch(value):
        raise PackageError(f"the version {value[:64]!r} is not valid: give it as 2.1.0 (two to four numbers)")
    return value


def read_manifest(path: Path) -> dict[str, Any]:
    """The handler manifest of the package at ``path``, checked: a zip with ``HandlerManifest.json``
    at its top (a list whose first entry has ``handlerManifest`` with the install, enable,
    disable, uninstall and update commands) and no member outside its folder."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = safe_members(archive, path, "the handler's folder")
            if HANDLER_MANIFEST not in names:
                raise PackageError(
                    f"{path} has no {HANDLER_MANIFEST} at its top: it is not a VM extension handler package"
                )
            info = archive.getinfo(HANDLER_MANIFEST)
            if info.file_size > MAX_MANIFEST_BYTES:
                raise PackageError(f"{path}: {HANDLER_MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
            document = json.loads(archive.read(HANDLER_MANIFEST))
    except zipfile.BadZipFile:
        raise PackageError(f"{path} is not a zip file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, PackageError):
            raise
        raise PackageError(f"{path}: {HANDLER_MANIFEST} is not JSON ({exc})") from None
    manifest = document[0].get("handlerManifest") if isinstance(document, list) and document else None
    if not isinstance(manifest, dict):
        raise PackageError(
            f"{path}: {HANDLER_MANIFEST} must be a list whose first entry has 'handlerManifest'"
        )
    missing = [name for name in COMMANDS if not isinstance(manifest.get(name), str) or not manifest[name]]
    if missing:
        raise PackageError(f"{path}: {HANDLER_MANIFEST} lacks {', '.join(missing)}")
    entry: dict[str, Any] = document[0]
    return entry


def safe_members(archive: zipfile.ZipFile, path: Path, folder: str) -> list[str]:
    """The member names of ``archive`` (the zip at ``path``); PackageError naming the first that
    would land outside ``folder`` where it is unpacked (absolute, ``..``, a backslash)."""
    names = archive.namelist()
    unsafe = [n for n in names if n.startswith("/") or ".." in Path(n).parts or "\\" in n]
    if unsafe:
        raise PackageError(f"{path}: the member {unsafe[0]!r} would land outside {folder}")
    return names


def file_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def sign(key: PackageSigningKey, claims: dict[str, Any], typ: str) -> str:
    """A JWS (ES256) over ``claims`` by the package-signing key; ``typ`` says what it signs."""
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid, "typ": typ})


def signature(
    key: PackageSigningKey, publisher: str, type_: str, version: str, sha256: str, size: int
) -> str:
    claims = {"publisher": publisher, "type": type_, "version": version, "sha256": sha256, "size": size}
    return sign(key, claims, SIGNATURE_TYPE)


def keep(packages_dir: Path, path: Path, sha256: str, suffix: str) -> Path:
    """A private copy of ``path`` as ``<packages_dir>/<sha256><suffix>``, written atomically and
    checked against ``sha256`` once written (PackageError when the source changed meanwhile)."""
    ensure_private_dir(packages_dir)
    kept = packages_dir / f"{sha256}{suffix}"
    if not kept.exists():
        handle, temporary = tempfile.mkstemp(dir=packages_dir, prefix=".publish-")
        try:
            with os.fdopen(handle, "wb") as target, path.open("rb") as source:
                shutil.copyfileobj(source, target)
                target.flush()
                os.fsync(target.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, kept)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    if file_digest(kept)[0] != sha256:
        kept.unlink(missing_ok=True)
        raise PackageError(f"{path} changed while it was being published: publish it again")
    return kept


def find_package(session: Session, publisher: str, type_: str, version: str) -> ExtensionPackage | None:
    return session.scalars(
        select(ExtensionPackage).where(
            ExtensionPackage.publisher_lower == publisher.lower(),
            ExtensionPackage.type_lower == type_.lower(),
            ExtensionPackage.version == version,
        )
    ).first()


def versions_of(session: Session, publisher: str, type_: str) -> list[ExtensionPackage]:
    """The published versions of an extension type, oldest first."""
    rows = session.scalars(
        select(ExtensionPackage).where(
            ExtensionPackage.publisher_lower == publisher.lower(),
            ExtensionPackage.type_lower == type_.lower(),
        )
    )
    return sorted(rows, key=lambda row: version_key(row.version))


def list_packages(session: Session) -> list[ExtensionPackage]:
    rows = session.scalars(select(ExtensionPackage))
    return sorted(rows, key=lambda row: (row.publisher_lower, row.type_lower, version_key(row.version)))


def resolve(
    packages: list[ExtensionPackage], wanted: str | None, auto_minor: bool
) -> ExtensionPackage | None:
    """The package a ``typeHandlerVersion`` asks for: the newest whose version begins with it
    (``2.1`` matches 2.1.x); with ``autoUpgradeMinorVersion``, the newest of the same major
    version that is not older; without a version, the newest."""
    if not packages:
        return None
    if not wanted:
        return packages[-1]
    asked = version_key(wanted)
    matching = [p for p in packages if version_key(p.version)[: len(asked)] == asked]
    if auto_minor:
        matching = [
            p for p in packages if version_key(p.version)[0] == asked[0] and version_key(p.version) >= asked
        ] or matching
    return matching[-1] if matching else None


def publish(
    session: Session,
    packages_dir: Path,
    key: PackageSigningKey,
    path: Path,
    *,
    publisher: str,
    type_: str,
    version: str,
    now: dt.datetime,
) -> ExtensionPackage:
    """Check, keep and sign the package at ``path``; PackageError when it cannot be published."""
    check_name(publisher, "publisher")
    check_name(type_, "type")
    check_version(version)
    if path.stat().st_size > MAX_PACKAGE_BYTES:
        raise PackageError(f"{path} is larger than {MAX_PACKAGE_BYTES // (1024 * 1024)} MiB")
    manifest = read_manifest(path)
    if find_package(session, publisher, type_, version) is not None:
        raise PackageError(
            f"{publisher}.{type_} {version} is published already: remove it first ('arc-controlplane"
            f" extension remove --publisher {publisher} --type {type_} --version {version}')"
        )
    sha256, size = file_digest(path)
    keep(packages_dir, path, sha256, ".zip")
    row = ExtensionPackage(
        publisher=publisher,
        publisher_lower=publisher.lower(),
        type=type_,
        type_lower=type_.lower(),
        version=version,
        sha256=sha256,
        size=size,
        signature=signature(key, publisher, type_, version, sha256, size),
        handler_manifest=manifest,
        published_at=now,
    )
    session.add(row)
    session.flush()
    return row


def remove(
    session: Session, packages_dir: Path, *, publisher: str, type_: str, version: str
) -> ExtensionPackage:
    """Remove a published package (its file too, when no other version shares it)."""
    row = find_package(session, publisher, type_, version)
    if row is None:
        raise PackageError(
            f"{publisher}.{type_} {version} is not published ('arc-controlplane extension list')"
        )
    session.delete(row)
    session.flush()
    shared = session.scalars(select(ExtensionPackage.id).where(ExtensionPackage.sha256 == row.sha256)).first()
    if shared is None:
        (packages_dir / f"{row.sha256}.zip").unlink(missing_ok=True)
    return row


def package_file(packages_dir: Path, package: ExtensionPackage) -> Path:
    return packages_dir / f"{package.sha256}.zip"
