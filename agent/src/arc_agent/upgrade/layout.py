"""The runtime's folders (docs/agent-packages.md, "Versions side by side"): each version in
``<prefix>/versions/<version>-<12 of its archive's SHA-256>``, ``current`` and ``previous`` links
to them, and every entry of the runtime (``bin``, ``lib``, ``pyvenv.cfg``, ``package.json``) a
link through ``current``, so that every path stays ``<prefix>/<entry>`` whichever version runs.

The collection's ``agent_package`` module lays a first install out the same way (it runs where no
agent is yet); every later change of version goes through :class:`Layout` here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from arc_agent.errors import AzcmError, ErrorCode

PREFIX = Path("/opt/azcmagent")
VERSIONS, CURRENT, PREVIOUS = "versions", "current", "previous"
RECORD = "package.json"
STAGING = ".azcmagent-"
ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "PYTHONDONTWRITEBYTECODE": "1"}
RECOVER = "recover"
"""``<prefix>/recover``: the recovery script, outside every version (a copy of ``recover.sh``)."""


def version_name(record: dict[str, Any]) -> str:
    return f"{record.get('version') or 'unknown'}-{str(record.get('sha256') or 'unrecorded')[:12]}"


class Layout:
    def __init__(self, prefix: Path = PREFIX) -> None:
        self.prefix = prefix
        self.versions = prefix / VERSIONS

    def _target(self, link: str) -> str:
        try:
            return os.path.basename(os.readlink(self.prefix / link))
        except OSError:
            return ""

    def current(self) -> str:
        """The folder name of the version that runs ("" when the layout is not side by side)."""
        return self._target(CURRENT)

    def previous(self) -> str:
        return self._target(PREVIOUS)

    def record(self, name: str) -> dict[str, Any]:
        try:
            found = json.loads((self.versions / name / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def _link(self, name: str, target: str) -> None:
        """``<prefix>/<name>`` -> ``target`` in one rename."""
        link = self.prefix / name
        if os.path.islink(link) and os.readlink(link) == target:
            return
        temporary = self.prefix / f".{name}.new"
        if os.path.lexists(temporary):
            os.remove(temporary)
        os.symlink(target, temporary)
        os.replace(temporary, link)

    def point(self, current: str, previous: str) -> None:
        """Make ``current`` the version that runs and ``previous`` the one kept ("" for none);
        then link every entry of the runtime through ``current``."""
        self._link(CURRENT, f"{VERSIONS}/{current}")
        if previous and previous != current:
            self._link(PREVIOUS, f"{VERSIONS}/{previous}")
        elif os.path.islink(self.prefix / PREVIOUS):
            os.remove(self.prefix / PREVIOUS)
        entries = set(os.listdir(self.versions / current))
        for entry in sorted(entries):
            self._link(entry, f"{CURRENT}/{entry}")

    def prune(self) -> list[str]:
        """Remove every version but the current and the previous one; their names."""
        kept = {self.current(), self.previous()}
        removed = []
        for name in sorted(os.listdir(self.versions)):
            if name not in kept:
                shutil.rmtree(self.versions / name, ignore_errors=True)
                removed.append(name)
        return removed

    def stage(self, archive: Path, sha256: str) -> str:
        """The archive's runtime unpacked, byte-compiled and answering in ``versions/``, checked
        against ``sha256`` first; its folder name. Nothing changes on any failure."""
        digest = hashlib.sha256()
        try:
            with open(archive, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT, f"cannot read the agent package {archive}: {exc}"
            ) from None
        if digest.hexdigest() != sha256.lower():
            raise AzcmError(
                ErrorCode.UPGRADE_FAILED,
                f"the agent package {archive} does not match its SHA-256 ({digest.hexdigest()}, wanted"
                f" {sha256.lower()}): it was damaged or replaced; copy it again. Nothing was changed.",
            )
        self.versions.mkdir(mode=0o755, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=self.versions))
        python, cli = staging / "bin" / "python3", staging / "bin" / "azcmagent"
        steps = [
            ("unpacking", ["tar", "--no-same-owner", "-xzf", str(archive), "-C", str(staging)]),
            ("byte-compiling", [str(python), "-m", "compileall", "-q", "-s", str(staging),
                                "-p", str(self.prefix), str(staging / "lib")]),
            ("running", [str(python), str(cli), "version"]),
        ]  # fmt: skip
        try:
            os.chmod(staging, 0o755)  # noqa: S103 - the runtime is readable by all
            output = ""
            for what, argv in steps:
                done = subprocess.run(  # noqa: S603 - tar and the new runtime's own Python
                    argv, capture_output=True, text=True, check=False, timeout=300,
                    env=ENVIRONMENT,
                )  # fmt: skip
                if done.returncode != 0:
                    raise AzcmError(
                        ErrorCode.UPGRADE_FAILED,
                        f"{what} the agent from {archive} failed (rc {done.returncode}):"
                        f" {(done.stderr or done.stdout).strip()[-2000:]}. Nothing was changed.",
                    )
                output = done.stdout
            record = {"archive": archive.name, "sha256": sha256.lower(), "version": output.split()[-1]}
            (staging / RECORD).write_text(json.dumps(record), encoding="utf-8")
            name = version_name(record)
            if name in (self.current(), self.previous()) and (self.versions / name).is_dir():
                shutil.rmtree(staging)
                return name
            shutil.rmtree(self.versions / name, ignore_errors=True)
            os.rename(staging, self.versions / name)
            return name
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def remove_leftovers(self) -> None:
        for path in self.versions.glob(STAGING + "*"):
            shutil.rmtree(path, ignore_errors=True)
