"""Agent bundles for tests: the shape ``make wheelhouse`` builds (``targets.json``, ``SHA256SUMS``,
one gzip tar per target holding an agent runtime), small, and published with the store's own code."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from pathlib import Path

from arc_controlplane.auth.keys import load_or_create_package_key
from arc_controlplane.db.engine import Database
from arc_controlplane.machines import agent_packages

TARGETS = ("cp311-x86_64", "cp313-x86_64")


def runtime_archive(path: Path, version: str, members: dict[str, bytes] | None = None) -> Path:
    files = members if members is not None else {"bin/azcmagent": f"#!/bin/sh\necho {version}\n".encode()}
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return path


def make_bundle(directory: Path, version: str, targets: tuple[str, ...] = TARGETS) -> Path:
    """An agent bundle of ``version`` for ``targets`` in ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    listed, sums = {}, []
    for target in targets:
        name = f"arc-agent-{version}-{target}.tar.gz"
        archive = runtime_archive(directory / name, f"{version} {target}")
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        listed[target] = {"archive": name, "sha256": digest, "wheels": []}
        sums.append(f"{digest}  {name}\n")
    (directory / "targets.json").write_text(
        json.dumps({"version": version, "prefix": "/opt/azcmagent", "targets": listed})
    )
    (directory / "SHA256SUMS").write_text("".join(sums))
    return directory


def publish_versions(db: Database, data_dir: Path, scratch: Path, *versions: str) -> None:
    """Publish a bundle of each of ``versions`` (those published already are left as they are)."""
    key = load_or_create_package_key(data_dir / "keys")
    for version in versions:
        with db.session() as session:
            if agent_packages.find(session, version, TARGETS[0]) is not None:
                continue
            bundle = make_bundle(scratch / f"bundle-{version}", version)
            now = dt.datetime.now(dt.UTC)
            agent_packages.publish(session, data_dir / "packages", key, bundle, now)
