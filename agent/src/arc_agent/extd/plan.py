"""The extension service's decisions, pure: the goal state in, the steps for each extension out
(docs/extensions.md). No file, process or network is touched here; ``extd`` runs the steps.

The rules:

- Local policy wins over the control plane (D:security-extensions.md, docs/reference/extensions.md):
  with ``extensions.enabled`` false, or an extension that ``extensions.blocklist`` names, or one
  that a non-empty ``extensions.allowlist`` does not name (``Allow/None``: none), an install,
  update or new settings are refused and reported as an error naming the setting; a removal is
  always allowed; an extension already installed is not removed for it.
- A package whose SHA-256, size or signature does not match runs nothing (the executor checks
  before unpacking; here: no package, no install).
- The handler model's orders (W:azurelinuxagent/ga/exthandlers.py): a new extension is
  installed then enabled; a new version updates the old one (old ``disable``, new ``update``,
  old ``uninstall``, new ``install`` when its ``updateMode`` is ``UpdateWithInstall``, new
  ``enable``); new settings (a new sequence number, same version) enable again; a deleted one
  is disabled then uninstalled.
- A sequence number already handled is not run again; its outcome is reported again when the
  control plane has not had it (after a restart). A handler still working in the background
  (its enable returned ``transitioning``) has handled it: the executor follows its status file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALLOW_NONE = "allow/none"


@dataclass(frozen=True)
class Policy:
    """The local settings that decide what may run."""

    enabled: bool = True
    allowlist: tuple[str, ...] = ()
    blocklist: tuple[str, ...] = ()

    def refusal(self, publisher: str, type_: str) -> str:
        """Why ``Publisher/Type`` may not be installed, updated or reconfigured here, or ""."""
        entry = f"{publisher}/{type_}"
        if not self.enabled:
            return (
                "extensions are disabled on this machine (extensions.enabled is false); to allow them:"
                " azcmagent config set extensions.enabled true"
            )
        if entry.lower() in {item.lower() for item in self.blocklist}:
            return (
                f"{entry} is blocked on this machine (extensions.blocklist); to allow it:"
                f" azcmagent config set extensions.blocklist --remove {entry}"
            )
        allowed = {item.lower() for item in self.allowlist}
        if allowed and entry.lower() not in allowed:
            return (
                f"{entry} is not allowed on this machine (extensions.allowlist"
                + (" is Allow/None" if ALLOW_NONE in allowed else " does not list it")
                + f"); to allow it: azcmagent config set extensions.allowlist --add {entry}"
            )
        return ""


@dataclass(frozen=True)
class Goal:
    """One extension of the goal state (docs/agent-protocol.md, 5.8)."""

    name: str
    publisher: str
    type: str
    sequence: int
    state: str
    """``enabled`` or ``deleted``."""
    package: Mapping[str, Any]
    """``version``, ``sha256``, ``size``, ``uri``, ``signatureUri``; empty when none serves it."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    protected: str = ""
    thumbprint: str = ""

    @classmethod
    def from_wire(cls, entry: Mapping[str, Any]) -> Goal:
        return cls(
            name=str(entry["name"]),
            publisher=str(entry["publisher"]),
            type=str(entry["type"]),
            sequence=int(entry["sequenceNumber"]),
            state=str(entry["state"]),
            package=dict(entry.get("package") or {}),
            settings=dict(entry.get("settings") or {}),
            protected=str(entry.get("protectedSettings") or ""),
            thumbprint=str(entry.get("protectedSettingsCertThumbprint") or ""),
        )

    @property
    def handler(self) -> str:
        """The handler's name, as its folder and log folder have it: ``Publisher.Type``."""
        return f"{self.publisher}.{self.type}"


@dataclass(frozen=True)
class Installed:
    """What the executor recorded of an extension on this machine."""

    name: str
    publisher: str
    type: str
    version: str
    """The package version installed (its folder is ``<Publisher.Type>-<version>``)."""
    sequence: int
    """The last sequence number handled (whatever its outcome)."""
    status: str
    """``success``, ``warning`` or ``error`` of that sequence number; ``transitioning`` while a
    step runs (a crash then leaves it so, and the next run does the step again)."""
    reported: bool
    """Whether the control plane has had that outcome."""
    handler_state: str = "Installed"
    """The handler model's ``HandlerState``: ``NotInstalled`` (its install did not finish or
    failed), ``Installed`` or ``Enabled``."""
    last_message: str = ""
    """What the outcome said (the handler's status message, its output, or why it failed)."""
    heartbeat: str = ""
    """The handler's heartbeat last reported (``reportHeartbeat`` handlers): status and message."""
    following: bool = False
    """The handler's enable returned with its status file saying ``transitioning``: it finishes in
    the background, and its status file is followed until it says how that ended."""
    running_pid: int = 0
    """The handler command running now (0: none), so that a restarted extd waits for it."""
    running_since: str = ""
    """That process's start time (``/proc/<pid>/stat``), which tells it from a later one with
    the same process id."""
    running_until: float = 0.0
    """When that command's time limit ends (seconds since the epoch)."""

    @property
    def busy(self) -> bool:
        """A step of this record's sequence number has not finished (a crash left it so)."""
        return self.status == "transitioning" and not self.following


# Steps; each is (verb, details). The executor knows how to run each verb.
DOWNLOAD = "download"  # fetch and verify the package: {"package"}
INSTALL = "install"  # unpack, write HandlerEnvironment.json, run installCommand: {"version"}
UPDATE = "update"  # old disable, new update, old uninstall, new install if needed: {"from", "version"}
SETTINGS = "settings"  # write config/<seq>.settings: {"sequence"}
ENABLE = "enable"  # run enableCommand: {"sequence"}
REMOVE = "remove"  # disable, uninstall, delete the folder: {"version"}
REFUSE = "refuse"  # record an error without running anything (reported next): {"message"}
REPORT = "report"  # report the recorded outcome again: {}
FORGET = "forget"  # drop the record (deleted, and reported)


@dataclass(frozen=True)
class Step:
    verb: str
    details: Mapping[str, Any] = field(default_factory=dict)


def plan_extension(goal: Goal | None, installed: Installed | None, policy: Policy) -> list[Step]:
    """The steps that bring one extension from ``installed`` to ``goal`` (None: the goal state
    no longer has it, as after the control plane forgot a deleted one)."""
    if goal is None:
        if installed is None:
            return []
        return [Step(REMOVE, {"version": installed.version}), Step(FORGET)]
    if installed is not None and installed.sequence == goal.sequence and not installed.busy:
        return [] if installed.reported else [Step(REPORT)]
    if goal.state == "deleted":
        removal = [Step(REMOVE, {"version": installed.version})] if installed is not None else []
        return [*removal, Step(REPORT)]
    refusal = policy.refusal(goal.publisher, goal.type)
    if refusal:
        return [Step(REFUSE, {"message": refusal}), Step(REPORT)]
    version = str(goal.package.get("version") or "")
    if not version:
        return [
            Step(
                REFUSE,
                {
                    "message": f"no published package serves {goal.handler} any more: publish one, or ask"
                    " for a published version"
                },
            ),
            Step(REPORT),
        ]
    steps: list[Step] = []
    # A step that was running when the service stopped (crash, power loss) is done again from
    # the start: a fresh install of the wanted version, never a "Succeeded" on a half install.
    if installed is None or installed.busy or installed.handler_state == "NotInstalled":
        steps += [Step(DOWNLOAD, {"package": dict(goal.package)}), Step(INSTALL, {"version": version})]
    elif installed.version != version:
        steps += [
            Step(DOWNLOAD, {"package": dict(goal.package)}),
            Step(UPDATE, {"from": installed.version, "version": version}),
        ]
    steps += [Step(SETTINGS, {"sequence": goal.sequence}), Step(ENABLE, {"sequence": goal.sequence})]
    return [*steps, Step(REPORT)]


def plan(goals: Sequence[Goal], installed: Mapping[str, Installed], policy: Policy) -> dict[str, list[Step]]:
    """The steps of every extension, by name (names compare without regard to case, as in ARM);
    extensions with nothing to do are left out."""
    by_name = {goal.name.lower(): goal for goal in goals}
    names = sorted(set(by_name) | {name.lower() for name in installed})
    records = {name.lower(): record for name, record in installed.items()}
    steps = {}
    for name in names:
        found = plan_extension(by_name.get(name), records.get(name), policy)
        if found:
            steps[name] = found
    return steps
