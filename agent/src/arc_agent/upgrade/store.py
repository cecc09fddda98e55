"""Agent packages from the control plane's store (docs/agent-upgrade.md, "From the control
plane"): the versions published for this machine's target, the one a ``--version`` names, and its
archive downloaded and checked (size, SHA-256, the control plane's signature) before it is staged.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from arc_agent.cpclient.agentapi import AgentApiError
from arc_agent.cpclient.packages import PackageRefused, verify_agent
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.versions import version_key

MAX_PACKAGE_BYTES = 512 * 1024 * 1024


class PackageSource(Protocol):
    """What the store needs of the agent API (``cpclient.agentapi.MachineApi``)."""

    def agent_packages(self, target: str) -> list[dict[str, Any]]: ...

    def package_signing_keys(self) -> dict[str, Any]: ...

    def fetch(self, uri: str, limit: int) -> bytes: ...


def runtime_target() -> str:
    """This machine's target as agent bundles name it: ``cp<major><minor>-<machine>``."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"


def resolve(published: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    """The entry ``wanted`` names: ``latest`` the newest; a version (``1.70`` or ``1.70.100.1``,
    numbers compared, so ``1.70.00100.1`` too) the newest whose numbers begin with its own."""
    ordered = sorted(
        (p for p in published if version_key(str(p.get("version", "")))),
        key=lambda p: version_key(str(p["version"])),
    )
    if wanted == "latest":
        return ordered[-1] if ordered else None
    asked = version_key(wanted)
    matching = [p for p in ordered if version_key(str(p["version"]))[: len(asked)] == asked]
    return matching[-1] if matching and asked else None


@dataclass(frozen=True)
class Downloaded:
    version: str
    path: Path
    sha256: str


def refused_by_control_plane(exc: AgentApiError) -> AzcmError:
    return AzcmError(
        ErrorCode.UPGRADE_FAILED,
        f"the control plane refused this machine's request for an agent package ({exc})."
        " Nothing was changed.",
    )


def choose(source: PackageSource, wanted: str) -> dict[str, Any]:
    """The store's entry for the version ``wanted`` names, for this machine's target; AzcmError
    naming what is wrong otherwise (nothing downloaded)."""
    if wanted != "latest" and not version_key(wanted):
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"--version {wanted[:64]!r} is not a version: give it as 1.70 (the newest 1.70.x), 1.70.100.1,"
            " or latest",
        )
    target = runtime_target()
    try:
        published = source.agent_packages(target)
    except AgentApiError as exc:
        raise refused_by_control_plane(exc) from None
    chosen = resolve(published, wanted)
    if chosen is None:
        known = ", ".join(str(p.get("version")) for p in published[-5:]) or "none"
        raise AzcmError(
            ErrorCode.UPGRADE_FAILED,
            f"the control plane publishes no agent {wanted} for this machine ({target}); published: {known}."
            " Publish it with 'arc-controlplane agent publish BUNDLE_DIR'. Nothing was changed.",
        )
    return chosen


def download(source: PackageSource, wanted: str, directory: Path) -> Downloaded:
    """The package ``wanted`` names, for this machine's target, checked and written to a new
    file in ``directory`` (the caller removes it); AzcmError naming what is wrong otherwise."""
    expected: Mapping[str, Any] = choose(source, wanted)
    target = runtime_target()
    try:
        size = int(expected.get("size", 0))
        if not 0 < size <= MAX_PACKAGE_BYTES:
            raise PackageRefused(f"the announced size {size} is out of range")
        data = source.fetch(str(expected.get("uri", "")), size + 1)
        verify_agent(data, expected, str(expected.get("signature", "")), source.package_signing_keys())
    except AgentApiError as exc:
        raise refused_by_control_plane(exc) from None
    except PackageRefused as exc:
        raise AzcmError(
            ErrorCode.UPGRADE_FAILED,
            f"the agent package {expected.get('version')} for {target} is refused: {exc}."
            " Nothing was changed.",
        ) from None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix=".agent-", suffix=".tar.gz")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Downloaded(str(expected["version"]), Path(name), str(expected["sha256"]).lower())
