"""The agent package store: agent runtimes the operator publishes (docs/agent-upgrade.md).

``arc-controlplane agent publish BUNDLE`` takes an agent bundle as ``make wheelhouse`` builds it
(``targets.json``, ``SHA256SUMS`` and one archive per target; docs/agent-packages.md): each
archive is checked against both lists, kept as ``<packages>/agent/<sha256>.tar.gz`` and signed
``{version, target, sha256, size}`` with the package-signing key (the extension catalogue's key
and signature form, ``catalog.py``). Agents download the archive for their own target and check
its SHA-256 and signature before anything of it runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from arc_controlplane.auth.keys import PackageSigningKey
from arc_controlplane.db.tables import AgentPackage
from arc_controlplane.machines.catalog import (
    PackageError,
    check_version,
    file_digest,
    keep,
    sign,
    version_key,
)

SIGNATURE_TYPE = "hybridops-arc-agent-package+jws"
TARGET = re.compile(r"^cp3[0-9]{1,2}-[a-z0-9_]{1,32}$")
ARCHIVE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.tar\.gz$")
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
REQUIRED_MEMBER = "bin/azcmagent"
PACKAGES_PATH = "/agent/v1/agentPackages"
"""Where the agent API serves packages (api/agent/agent_packages.py; docs/agent-protocol.md, 5.9)."""
RUNTIME_PREFIX = "/opt/azcmagent"
"""Where the runtime goes on a host (the real agent's path; the bundle's ``prefix``)."""


def package_uri(public_url: str, package: AgentPackage) -> str:
    return f"{public_url}{PACKAGES_PATH}/{package.version}/{package.target}"


def package_file(packages_dir: Path, package: AgentPackage) -> Path:
    return packages_dir / "agent" / f"{package.sha256}.tar.gz"


def signature(key: PackageSigningKey, version: str, target: str, sha256: str, size: int) -> str:
    claims = {"version": version, "target": target, "sha256": sha256, "size": size}
    return sign(key, claims, SIGNATURE_TYPE)


@dataclass(frozen=True)
class BundleEntry:
    target: str
    archive: Path
    sha256: str


def read_bundle(bundle: Path) -> tuple[str, list[BundleEntry]]:
    """The version and the per-target archives of the bundle at ``bundle``, each listed alike in
    ``targets.json`` and ``SHA256SUMS``; PackageError naming what is wrong otherwise."""
    try:
        document = json.loads((bundle / "targets.json").read_text(encoding="utf-8"))
        sums_text = (bundle / "SHA256SUMS").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PackageError(
            f"{bundle} is not an agent bundle: it has no {Path(str(exc.filename)).name}"
            " (build one with 'make wheelhouse'; docs/agent-packages.md)"
        ) from None
    except ValueError as exc:
        raise PackageError(f"{bundle}/targets.json is not JSON ({exc})") from None
    sums = {}
    for line in sums_text.splitlines():
        digest, _, name = line.strip().partition("  ")
        if digest and name:
            sums[name.lstrip("*")] = digest.lower()
    targets = document.get("targets") if isinstance(document, dict) else None
    version = str(document.get("version", "")) if isinstance(document, dict) else ""
    if not isinstance(targets, dict) or not targets:
        raise PackageError(f"{bundle}/targets.json lists no targets")
    check_version(version)
    entries = []
    for target, entry in sorted(targets.items()):
        archive = str(entry.get("archive", "")) if isinstance(entry, dict) else ""
        digest = str(entry.get("sha256", "")).lower() if isinstance(entry, dict) else ""
        if not TARGET.fullmatch(target) or not ARCHIVE.fullmatch(archive):
            raise PackageError(f"{bundle}/targets.json: the target {target[:64]!r} is not valid")
        if sums.get(archive) != digest:
            raise PackageError(
                f"{bundle}: {archive} has SHA-256 {digest or 'none'} in targets.json but"
                f" {sums.get(archive, 'no line')} in SHA256SUMS; build the bundle again"
            )
        entries.append(BundleEntry(target, bundle / archive, digest))
    return version, entries


def check_archive(path: Path, sha256: str) -> int:
    """The archive's size, once its SHA-256 is ``sha256`` and it holds an agent runtime (a gzip
    tar with ``bin/azcmagent``, no member outside its folder)."""
    if not path.is_file():
        raise PackageError(f"{path} is missing from the bundle")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise PackageError(f"{path} is larger than {MAX_ARCHIVE_BYTES // (1024 * 1024)} MiB")
    digest, size = file_digest(path)
    if digest != sha256:
        raise PackageError(f"{path} has SHA-256 {digest}, not the {sha256} the bundle lists: it was damaged")
    try:
        with tarfile.open(path, "r:gz") as archive:
            names = set()
            for member in archive:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise PackageError(f"{path}: the member {member.name!r} would land outside the runtime")
                names.add(str(PurePosixPath(*[p for p in name.parts if p != "."])))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageError(f"{path} is not a gzip tar archive ({exc})") from None
    if REQUIRED_MEMBER not in names:
        raise PackageError(f"{path} holds no {REQUIRED_MEMBER}: it is not an agent runtime")
    return size


def find(session: Session, version: str, target: str) -> AgentPackage | None:
    return session.scalars(
        select(AgentPackage).where(AgentPackage.version == version, AgentPackage.target == target)
    ).first()


def list_packages(session: Session, target: str | None = None) -> list[AgentPackage]:
    """The published packages (of ``target``), oldest version first."""
    query = select(AgentPackage)
    if target is not None:
        query = query.where(AgentPackage.target == target)
    return sorted(session.scalars(query), key=lambda row: (version_key(row.version), row.target))


def versions(session: Session) -> list[str]:
    """The published versions, oldest first."""
    return sorted({row.version for row in session.scalars(select(AgentPackage))}, key=version_key)


def resolve(known: list[str], wanted: str) -> str | None:
    """The version ``wanted`` names among ``known`` (oldest first): itself, or the newest that
    begins with it (``1.65`` names the newest 1.65.x); ``latest`` names the newest."""
    if not known:
        return None
    if wanted == "latest":
        return known[-1]
    asked = version_key(wanted)
    matching = [v for v in known if version_key(v)[: len(asked)] == asked]
    return matching[-1] if matching else None


def halted(session: Session) -> dict[str, str]:
    """The halted versions and why (docs/agent-upgrade.md, "Automatic upgrades")."""
    rows = session.scalars(select(AgentPackage).where(AgentPackage.halted.is_not(None)))
    return {row.version: str(row.halted) for row in rows}


def halt(connection: Connection, version: str, reason: str) -> None:
    """Halt ``version`` (every target), unless it is halted already: a machine failed to upgrade
    to it. ``version`` may be what a ``desiredVersion`` asked (``1.66``): the version it names then
    halts. It stays halted until it is removed (and published again)."""
    known = sorted(set(connection.scalars(select(AgentPackage.version))), key=version_key)
    named = resolve(known, version)
    if named is None:
        return
    connection.execute(
        update(AgentPackage)
        .where(AgentPackage.version == named, AgentPackage.halted.is_(None))
        .values(halted=reason[:1024])
    )


def published_version(session: Session, wanted: str) -> str | None:
    """The newest published version ``wanted`` names (numbers compared: ``1.64.03414.2961`` is
    ``1.64.3414.2961``; ``1.64`` names the newest 1.64.x), None when the store has none."""
    return resolve(versions(session), wanted)


def publish(
    session: Session, packages_dir: Path, key: PackageSigningKey, bundle: Path, now: dt.datetime
) -> list[AgentPackage]:
    """Check, keep and sign every target's archive of the bundle; PackageError (and nothing
    published) when any of them cannot be."""
    version, entries = read_bundle(bundle)
    taken = [entry.target for entry in entries if find(session, version, entry.target) is not None]
    if taken:
        raise PackageError(
            f"agent {version} is published already for {', '.join(taken)}: remove it first"
            f" ('arc-controlplane agent remove --version {version}')"
        )
    sizes = [check_archive(entry.archive, entry.sha256) for entry in entries]
    rows = []
    for entry, size in zip(entries, sizes, strict=True):
        keep(packages_dir / "agent", entry.archive, entry.sha256, ".tar.gz")
        row = AgentPackage(
            version=version,
            target=entry.target,
            archive=entry.archive.name,
            sha256=entry.sha256,
            size=size,
            signature=signature(key, version, entry.target, entry.sha256, size),
            published_at=now,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def remove(session: Session, packages_dir: Path, version: str) -> list[AgentPackage]:
    """Remove every target of a published version (and the files no other row shares)."""
    rows = [row for row in list_packages(session) if row.version == version]
    if not rows:
        raise PackageError(f"agent {version} is not published ('arc-controlplane agent list')")
    for row in rows:
        session.delete(row)
    session.flush()
    for row in rows:
        if session.scalars(select(AgentPackage.id).where(AgentPackage.sha256 == row.sha256)).first() is None:
            package_file(packages_dir, row).unlink(missing_ok=True)
    return rows


@dataclass(frozen=True)
class PublishedBundle:
    """A published version as an agent bundle (docs/agent-packages.md) to download: the files
    ``targets.json`` and ``SHA256SUMS`` made from the store, and the archives by file name."""

    version: str
    targets_json: bytes
    sums: bytes
    archives: dict[str, AgentPackage]


def published_bundle(session: Session, version: str) -> PublishedBundle | None:
    """The version ``version`` (exactly as published) as a bundle, None when it is not published.
    The same store always gives the same bytes (sorted keys), so the SHA-256 of targets.json
    that SHA256SUMS lists holds between downloads."""
    rows = [row for row in list_packages(session) if row.version == version]
    if not rows:
        return None
    document = {
        "version": version,
        "prefix": RUNTIME_PREFIX,
        "targets": {row.target: {"archive": row.archive, "sha256": row.sha256} for row in rows},
    }
    targets_json = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
    lines = [f"{hashlib.sha256(targets_json).hexdigest()}  targets.json"]
    lines += [f"{row.sha256}  {row.archive}" for row in sorted(rows, key=lambda row: row.archive)]
    return PublishedBundle(
        version=version,
        targets_json=targets_json,
        sums=("\n".join(lines) + "\n").encode("utf-8"),
        archives={row.archive: row for row in rows},
    )
