"""The agent's Linux resources for machine configuration (docs/machine-configuration.md,
"Resources"), with the class and property names of their public DSC counterparts
(docs/reference/machine-configuration.md, "Packages"): ``nxFile``, ``nxFileLine``, ``nxService``,
``nxPackage``, ``nxUser``, ``nxGroup``, ``nxScript``, and ``nxSysctl`` (ours).

Each resource answers ``test`` (is the host as the properties say? with the reasons why not,
and what it found) and ``set`` (make it so). Files are read and written here, atomically;
everything else goes through :class:`Host`, the one boundary to the host's commands
(``systemctl``, ``dpkg-query``, ``apt-get``, ``getent``, ``useradd``..., ``/bin/sh``), which
tests script.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

COMMAND_TIMEOUT_SECONDS = 300
SUCCESS = "DSC::RESOURCE::SUCCESS"


class ResourceError(Exception):
    """The resource cannot be tested or set as its properties say; the message says why."""


@dataclass(frozen=True)
class Reason:
    code: str
    phrase: str

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "phrase": self.phrase}


@dataclass
class Outcome:
    compliant: bool
    reasons: list[Reason] = field(default_factory=list)
    found: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Host(Protocol):
    """The host's commands (argv lists, never a shell string, except nxScript's own scripts)."""

    def run(
        self, argv: Sequence[str], stdin: str = "", timeout: float = COMMAND_TIMEOUT_SECONDS
    ) -> Completed: ...


class SystemHost:
    """The real host: commands with ``LC_ALL=C`` and a time limit."""

    def run(
        self, argv: Sequence[str], stdin: str = "", timeout: float = COMMAND_TIMEOUT_SECONDS
    ) -> Completed:
        env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
        try:
            done = subprocess.run(  # noqa: S603 - argv lists from the resources, no shell string
                list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except FileNotFoundError:
            return Completed(127, "", f"{argv[0]}: not found")
        except subprocess.TimeoutExpired:
            return Completed(124, "", f"{argv[0]} did not finish within {timeout:g} s")
        return Completed(done.returncode, done.stdout, done.stderr)


def _text(props: Mapping[str, Any], name: str, default: str = "") -> str:
    value = props.get(name)
    return default if value is None else str(value)


def _required(props: Mapping[str, Any], name: str, resource: str) -> str:
    value = _text(props, name)
    if not value:
        raise ResourceError(f"{resource} needs {name}")
    return value


def _bool(props: Mapping[str, Any], name: str) -> bool | None:
    value = props.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise ResourceError(f"{name} must be True or False, not {value!r}")


def _ensure(props: Mapping[str, Any]) -> bool:
    """Ensure: Present (default) or Absent."""
    value = _text(props, "Ensure", "Present").lower()
    if value not in ("present", "absent"):
        raise ResourceError(f"Ensure must be Present or Absent, not {props.get('Ensure')!r}")
    return value == "present"


def _presence(kind: str, name: str, present: bool) -> str:
    """Why a user or group that should (not) exist is wrong."""
    found, wanted = ("missing", "present") if present else ("present", "absent")
    return f"the {kind} {name} is {found}; wanted: {wanted}"


def _differs(reasons: list[Reason], code: str, what: str, found: object, wanted: object) -> None:
    reasons.append(Reason(code, f"{what} is {found}; wanted: {wanted}"))


def write_atomic(
    path: Path, data: bytes, mode: int | None = None, owner: tuple[int, int] | None = None
) -> None:
    """``path`` holds ``data``, replaced in one rename (a crash leaves the old file or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        if owner is not None:
            os.chown(temporary, *owner)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _kept_metadata(path: Path) -> tuple[int | None, tuple[int, int] | None]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None, None
    return stat.st_mode & 0o7777, (stat.st_uid, stat.st_gid)


def _account_name(kind: str, number: int) -> str:
    """The user (``Owner``) or group (``Group``) name of ``number``, or the number."""
    try:
        return pwd.getpwuid(number).pw_name if kind == "Owner" else grp.getgrgid(number).gr_name
    except KeyError:
        return str(number)


def _mode(props: Mapping[str, Any]) -> int | None:
    value = _text(props, "Mode")
    if not value:
        return None
    if not re.fullmatch(r"[0-7]{3,4}", value):
        raise ResourceError(f"Mode must be octal digits such as 0644, not {value!r}")
    return int(value, 8)


def _uid(name: str) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ResourceError(f"there is no user {name}") from None


def _gid(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ResourceError(f"there is no group {name}") from None


class NxFile:
    """A file or directory: ``DestinationPath``, ``Ensure``, ``Type`` (file, directory),
    ``Contents``, ``Owner``, ``Group``, ``Mode``."""

    def _wanted(self, props: Mapping[str, Any]) -> tuple[Path, bool, str]:
        path = Path(_required(props, "DestinationPath", "nxFile"))
        if not path.is_absolute():
            raise ResourceError(f"DestinationPath must be absolute, not {path}")
        kind = _text(props, "Type", "file").lower()
        if kind not in ("file", "directory"):
            raise ResourceError(f"Type must be file or directory, not {kind!r}")
        return path, _ensure(props), kind

    def test(self, props: Mapping[str, Any], host: Host) -> Outcome:
        path, present, kind = self._wanted(props)
        reasons: list[Reason] = []
        exists = path.is_dir() if kind == "directory" else path.is_file()
        found: dict[str, Any] = {"DestinationPath": str(path), "Ensure": "Present" if exists else "Absent"}
        if not present:
            if path.exists():
                _differs(reasons, "nxFile:Ensure", str(path), "present", "Absent")
            return Outcome(not reasons, reasons, found)
        if not exists:
            what = "missing" if not path.exists() else f"not a {kind}"
            _differs(reasons, "nxFile:Ensure", str(path), what, f"a {kind}")
            return Outcome(False, reasons, found)
        stat = path.stat()
        if "Contents" in props and kind == "file" and path.read_bytes() != _text(props, "Contents").encode():
            reasons.append(Reason("nxFile:Contents", f"{path} does not have the wanted contents"))
        mode = _mode(props)
        found["Mode"] = f"{stat.st_mode & 0o7777:04o}"
        if mode is not None and stat.st_mode & 0o7777 != mode:
            _differs(reasons, "nxFile:Mode", f"the mode of {path}", found["Mode"], f"{mode:04o}")
        for prop, current in (("Owner", stat.st_uid), ("Group", stat.st_gid)):
            name = _account_name(prop, current)
            found[prop] = name
            if _text(props, prop) and _text(props, prop) != name:
                _differs(reasons, f"nxFile:{prop}", f"the {prop.lower()} of {path}", name, _text(props, prop))
        return Outcome(not reasons, reasons, found)

    def set(self, props: Mapping[str, Any], host: Host) -> None:
        path, present, kind = self._wanted(props)
        if not present:
            if path.is_dir() and not path.is_symlink():
                try:
                    path.rmdir()
                except OSError as exc:
                    raise ResourceError(f"{path} is a directory that is not empty ({exc.strerror})") from None
            else:
                path.unlink(missing_ok=True)
            return
        mode = _mode(props)
        uid = _uid(_text(props, "Owner")) if _text(props, "Owner") else -1
        gid = _gid(_text(props, "Group")) if _text(props, "Group") else -1
        if kind == "directory":
            path.mkdir(parents=True, exist_ok=True)
        elif "Contents" in props or not path.exists():
            kept_mode, kept_owner = _kept_metadata(path)
            write_atomic(
                path,
                _text(props, "Contents").encode("utf-8"),
                mode if mode is not None else kept_mode,
                kept_owner,
            )
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        if mode is not None:
            os.chmod(path, mode)


class NxFileLine:
    """A line a file must hold and lines it must not: ``FilePath``, ``ContainsLine``,
    ``DoesNotContainPattern`` (a regular expression; matching lines are removed, the line added)."""

    def _wanted(self, props: Mapping[str, Any]) -> tuple[Path, str, re.Pattern[str] | None]:
        path = Path(_required(props, "FilePath", "nxFileLine"))
        pattern = _text(props, "DoesNotContainPattern")
        try:
            compiled = re.compile(pattern) if pattern else None
        except re.error as exc:
            raise ResourceError(f"DoesNotContainPattern is not a regular expression: {exc}") from None
        return path, _text(props, "ContainsLine"), compiled

    def test(self, props: Mapping[str, Any], host: Host) -> Outcome:
        path, line, pattern = self._wanted(props)
        if not path.is_file():
            return Outcome(
                False, [Reason("nxFileLine:FilePath", f"{path} does not exist")], {"FilePath": str(path)}
            )
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        reasons = []
        if line and line not in lines:
            reasons.append(Reason("nxFileLine:ContainsLine", f"{path} does not contain the line '{line}'"))
        unwanted = [text for text in lines if pattern is not None and pattern.search(text) and text != line]
        for text in unwanted[:5]:
            reasons.append(Reason("nxFileLine:DoesNotContainPattern", f"{path} contains '{text}'"))
        return Outcome(not reasons, reasons, {"FilePath": str(path), "ContainsLine": line in lines})

    def set(self, props: Mapping[str, Any], host: Host) -> None:
        path, line, pattern = self._wanted(props)
        if not path.is_file():
            raise ResourceError(f"{path} does not exist (nxFile creates files)")
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        lines = [t for t in text.splitlines() if pattern is None or not pattern.search(t) or t == line]
        if line and line not in lines:
            lines.append(line)
        mode, owner = _kept_metadata(path)
        write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"), mode, owner)


class NxService:
    """A systemd service: ``Name``, ``Controller`` (systemd), ``Enabled``, ``State`` (running, stopped)."""

    def _wanted(self, props: Mapping[str, Any]) -> tuple[str, bool | None, str]:
        name = _required(props, "Name", "nxService")
        controller = _text(props, "Controller", "systemd").lower()
        if controller != "systemd":
            raise ResourceError(f"Controller {controller!r}: this agent manages systemd services only")
        state = _text(props, "State").lower()
        if state not in ("", "running", "stopped"):
            raise ResourceError(f"State must be running or stopped, not {state!r}")
        unit = name if "." in name else f"{name}.service"
        return unit, _bool(props, "Enabled"), state

    def _read(self, unit: str, host: Host) -> dict[str, str]:
        done = host.run(["systemctl", "show", "--property=LoadState,ActiveState,UnitFileState", unit])
        return dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)

    def test(self, props: Mapping[str, Any], host: Host) -> Outcome:
        unit, enabled, state = self._wanted(props)
        shown = self._read(unit, host)
        found = {
            "Name": unit,
            "State": shown.get("ActiveState", ""),
            "Enabled": shown.get("UnitFileState", ""),
        }
        if shown.get("LoadState") != "loaded":
            return Outcome(False, [Reason("nxService:Name", f"there is no service {unit}")], found)
        reasons: list[Reason] = []
        running = shown.get("ActiveState") == "active"
        if state and running != (state == "running"):
            _differs(reasons, "nxService:State", unit, shown.get("ActiveState"), state)
        is_enabled = shown.get("UnitFileState") in ("enabled", "enabled-runtime", "static", "alias")
        if enabled is not None and is_enabled != enabled:
            _differs(
                reasons,
                "nxService:Enabled",
                f"{unit} at boot",
                shown.get("UnitFileState"),
                "enabled" if enabled else "disabled",
            )
        return Outcome(not reasons, reasons, found)

    def set(self, props: Mapping[str, Any], host: Host) -> None:
        unit, enabled, state = self._wanted(props)
        steps: list[list[str]] = []
        if enabled is not None:
            steps.append(["systemctl", "enable" if enabled else "disable", unit])
        if state:
            steps.append(["systemctl", "start" if state == "running" else "stop", unit])
        for argv in steps:
            done = host.run(argv)
            if done.returncode != 0:
                raise ResourceError(f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}")


class NxPackage:
    """A Debian package: ``Name``, ``Ensure``, ``PackageManager`` (apt)."""

    def _wanted(self, props: Mapping[str, Any]) -> tuple[str, bool]:
        name = _required(props, "Name", "nxPackage")
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]{0,127}", name):
            raise ResourceError(f"{name!r} is not a Debian package name")
        manager = _text(props, "PackageManager", "apt").lower()
        if manager not in ("apt", "dpkg"):
            raise ResourceError(f"PackageManager {manager!r}: this agent manages apt (dpkg) packages only")
        return name, _ensure(props)

    def _installed(self, name: str, host: Host) -> bool:
        done = host.run(["dpkg-query", "--show", "--showformat=${db:Status-Abbrev}", name])
        return done.returncode == 0 and done.stdout.startswith("ii")

    def test(self, props: Mapping[str, Any], host: Host) -> Outcome:
        name, present = self._wanted(props)
        installed = self._installed(name, host)
        found = {"Name": name, "Ensure": "Present" if installed else "Absent"}
        if installed == present:
            return Outcome(True, [], found)
        now, wanted = ("not installed", "installed") if present else ("installed", "not installed")
        return Outcome(
            False, [Reason("nxPackage:Ensure", f"the package {name} is {now}; wanted: {wanted}")], found
        )

    def set(self, props: Mapping[str, Any], host: Host) -> None:
        name, present = self._wanted(props)
        argv = (
            ["apt-get", "install", "-y", "--no-install-recommends", name]
            if present
            else ["apt-get", "remove", "-y", name]
        )
        done = host.run(argv)
        if done.returncode != 0:
            raise ResourceError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()[-300:]}")


class NxUser:
    """A local user: ``UserName``, ``Ensure``, ``FullName``, ``HomeDirectory``, ``GroupID``."""

    def test(self, props: Mapping[str, Any], host: Host) -> Outcome:
        name = _required(props, "UserName", "nxUser")
        present = _ensure(props)
        try:
            entry: pwd.struct_passwd | None = pwd.getpwnam(name)
        except KeyError:
            entry = None
        found = {"UserName": name, "Ensure": "Present" if entry else "Absent"}
        if entry is None or not present:
            if (entry is not None) == present:
                return Outcome(True, [], found)
            return Outcome(
                False,
                [
                    Reason(
                        "nxUser:Ensure",
                        _presence("user", name, present),
                    )
                ],
                found,
            )
        reasons: list[Reason] = []
        for prop, current in (("FullName", entry.pw_gecos.split(",")[0]), ("HomeDirectory", entry.pw_dir)):
            found[prop] = current
            if _text(props, prop) and _text(props, prop) != current:
                _differs(reasons, f"nxUser:{prop}", f"the {prop} of {name}", current, _text(props, prop))
        wanted_group = _text(props, "GroupID")
        if wanted_group:
            gid = int(wanted_group) if wanted_group.isdigit() else _gid(wanted_group)
            if entry.pw_gid != gid:
                _differs(reasons, "nxUser:GroupID", f"the group of {name}", entry.pw_gid, gid)
        return Outcome(not reasons, reasons, found)

    def set(self, props: Mapping[str, Any], host: Host) -> None:
        name = _required(props, "UserName", "nxUser")
        if not _ensure(props):
            argv = ["userdel", name]
        else:
            try:
                pwd.getpwnam(name)
                argv = ["usermod"]
            except KeyError:
                argv = ["useradd", "--create-home"]
            for prop, flag in (("FullName", "--comment"), ("HomeDirectory", "--home"), ("GroupID", "--gid")):
                if _text(props, prop):
                    argv += [flag, _text(props, prop)]
            argv.append(name)
        done = host.run(argv)
        if done.returncode != 0:
            raise ResourceError(f"{argv[0]} {name} failed: {done.stderr.strip()[-300:]}")


class NxGroup:
    """A local group: ``GroupName``, ``Ensure``, ``Members`` (exactly), ``MembersToInclude``,
    ``MembersToExclude``."""

    @staticmethod
    def _names(props: Mapping[str, Any], prop: str) -> list[str] | None:
        value = props.get(prop)
        if value is None:
            return None
        items = value if isinstance(value, list) else [part for part in str(value).split(",")]
        return sorted(str(item).strip() for item in items if str(item).strip())

    def test(self, props: Mapping[str, Any], host: Host) -> Outcome:
        name = _required(props, "GroupName", "nxGroup")
        present = _ensure(props)
        try:
            entry: grp.struct_group | None = grp.getgrnam(name)
        except KeyError:
            entry = None
        found: dict[str, Any] = {"GroupName": name, "Ensure": "Present" if entry else "Absent"}
        if entry is None or not present:
            if (entry is not None) == present:
                return Outcome(True, [], found)
            return Outcome(
                False,
                [
                    Reason(
                        "nxGroup:Ensure",
                        _presence("group", name, present),
                    )
                ],
                found,
            )
        members = sorted(entry.gr_mem)
        found["Members"] = members
        reasons: list[Reason] = []
        exact = self._names(props, "Members")
        if exact is not None and members != exact:
            _differs(
                reasons,
                "nxGroup:Members",
                f"the members of {name}",
                ", ".join(members) or "none",
                ", ".join(exact),
            )
        for user in self._names(props, "MembersToInclude") or []:
            if user not in members:
                reasons.append(Reason("nxGroup:MembersToInclude", f"{user} is not a member of {name}"))
        for user in self._names(props, "MembersToExclude") or []:
            if user in members:
                reasons.append(Reason("nxGroup:MembersToExclude", f"{user} is a member of {name}"))
        return Outcome(not reasons, reasons, found)

    def set(self, props: Mapping[str, Any], host: Host) -> None:
        name = _required(props, "GroupName", "nxGroup")
        steps: list[list[str]] = []
        if not _ensure(props):
            steps.append(["groupdel", name])
        else:
            try:
                members = set(grp.getgrnam(name).gr_mem)
            except KeyError:
                steps.append(["groupadd", name])
                members = set()
            exact = self._names(props, "Members")
            if exact is not None:
                steps.append(["gpasswd", "--members", ",".join(exact), name])
                members = set(exact)
            steps += [
                ["gpasswd", "--add", u, name]
                for u in self._names(props, "MembersToInclude") or []
                if u not in members
            ]
            steps += [
                ["gpasswd", "--delete", u, name]
                for u in self._names(props, "MembersToExclude") or []
                if u in members
            ]
        for argv in steps:
            done = host.run(argv)
            if done.returncode != 0:
                raise ResourceError(f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}")


class NxSysctl:
    """A kernel parameter (ours; no public DSC counterpart): ``Name`` (``net.ipv4.ip_forward``),
    ``Value``; set at once and kept in ``/etc/sysctl.d/90-guestconfiguration.conf``."""

    def __init__(
        self, proc: Path = Path("/proc/sys"), conf: Path = Path("/etc/sysctl.d/90-guestconfiguration.conf")
    ) -> None:
        self.proc = proc
        self.conf = conf

    def _wanted(self, props: Mapping[str, Any]) -> tuple[str, Path, str]:
        name = _required(props, "Name", "nxSysctl")
        if not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_-]+)+", name):
            raise ResourceError(f"{name!r} is not a kernel parameter name")
        return name, self.proc / name.replace(".", "/"), " ".join(_text(props, "Value").split())

    def test(self, props: Mapping[str, Any], host: Host) -> Outcome:
        name, path, value = self._wanted(props)
        try:
            current = " ".join(path.read_text().split())
        except OSError:
            return Outcome(
                False, [Reason("nxSysctl:Name", f"the kernel has no parameter {name}")], {"Name": name}
            )
        if current == value:
            return Outcome(True, [], {"Name": name, "Value": current})
        return Outcome(
            False,
            [Reason("nxSysctl:Value", f"{name} is {current}; wanted: {value}")],
            {"Name": name, "Value": current},
        )

    def set(self, props: Mapping[str, Any], host: Host) -> None:
        name, path, value = self._wanted(props)
        try:
            path.write_text(value + "\n")
        except OSError as exc:
            raise ResourceError(f"{name} cannot be set to {value}: {exc.strerror}") from None
        lines = []
        if self.conf.is_file():
            lines = [
                line for line in self.conf.read_text().splitlines() if line.split("=")[0].strip() != name
            ]
        lines.append(f"{name} = {value}")
        write_atomic(self.conf, ("\n".join(lines) + "\n").encode(), 0o644)


class NxScript:
    """Scripts: ``TestScript`` (exit 0: compliant), ``SetScript``, ``GetScript``; run by
    ``/bin/sh``, as root."""

    def test(self, props: Mapping[str, Any], host: Host) -> Outcome:
        script = _required(props, "TestScript", "nxScript")
        done = host.run(["/bin/sh", "-c", script])
        found: dict[str, Any] = {"TestScript": done.returncode}
        if _text(props, "GetScript"):
            found["GetScript"] = host.run(["/bin/sh", "-c", _text(props, "GetScript")]).stdout.strip()[-1000:]
        if done.returncode == 0:
            return Outcome(True, [], found)
        said = (done.stdout or done.stderr).strip()[-300:]
        return Outcome(
            False,
            [
                Reason(
                    "nxScript:TestScript",
                    f"TestScript exited {done.returncode}" + (f": {said}" if said else ""),
                )
            ],
            found,
        )

    def set(self, props: Mapping[str, Any], host: Host) -> None:
        script = _required(props, "SetScript", "nxScript")
        done = host.run(["/bin/sh", "-c", script])
        if done.returncode != 0:
            raise ResourceError(
                f"SetScript exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
            )


class Resource(Protocol):
    def test(self, props: Mapping[str, Any], host: Host) -> Outcome: ...

    def set(self, props: Mapping[str, Any], host: Host) -> None: ...


def registry() -> dict[str, Resource]:
    """The resources by class name (case-insensitively looked up by :func:`find`)."""
    return {
        "nxFile": NxFile(),
        "nxFileLine": NxFileLine(),
        "nxService": NxService(),
        "nxPackage": NxPackage(),
        "nxUser": NxUser(),
        "nxGroup": NxGroup(),
        "nxSysctl": NxSysctl(),
        "nxScript": NxScript(),
    }


def find(resources: Mapping[str, Resource], class_name: str) -> Resource | None:
    lowered = {name.lower(): resource for name, resource in resources.items()}
    return lowered.get(class_name.lower())
