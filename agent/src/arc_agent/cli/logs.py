"""``azcmagent logs``: a ZIP of what it takes to diagnose this agent (docs/reference/azcmagent.md).

What goes in, by name in the archive:

- ``log/<file>``: the agent's logs (``*.log`` in the log directory; without ``-f/--full`` only
  the current files, each cut to its last ``TAIL_BYTES`` at a line start; with it also the
  rotated ``*.log.N``, all whole). Lines are copied as they are: the agent never logs secrets.
- ``agentconfig.json``, ``localconfig.json``, ``status/himds-status.json``, ``certs/identity.crt``,
  ``certs/credential.json``, ``connection-ca.pem``: the state files that hold no secret.
- ``show.json``: what ``azcmagent show -j`` prints (or the error it gives).
- ``system/systemctl-status.txt``, ``system/journalctl-himdsd.txt``: what systemd says of the
  agent's units, when systemctl (journalctl) is installed.
- ``collection.json``: what was collected, cut or left out, and why.

Never: the machine's private key or anything else in ``certs/``, the token key files
(``tokens/``), the ``--config`` file. Only named files are read, never through a symbolic link,
and a file that is the private key or a token key under another name is refused. The ZIP is
written atomically with mode 0600 (it holds the machine's identity details). Needs root
(AZCM0018): the logs are root's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from arc_agent import __version__
from arc_agent.cli.context import Context
from arc_agent.cli.output import CommandResult
from arc_agent.cli.show import machine_view
from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import remove_if_present, sync_directory
from arc_agent.paths import AgentPaths

EffectiveUid = Callable[[], int]

TAIL_BYTES = 10 * 1024 * 1024
"""Without ``--full``, each log is cut to its last 10 MiB."""
COMMAND_TIMEOUT = 10.0
COMMAND_OUTPUT_BYTES = 4 * 1024 * 1024
CHUNK = 1024 * 1024
CURRENT_LOG = re.compile(r"[^/]+\.log")
ROTATED_LOG = re.compile(r"[^/]+\.log\.[0-9]+")
ZIP_EPOCH = 315_619_200
"""1980-01-02T00:00:00Z: the earliest time a ZIP entry can carry (a day of margin for time zones)."""
SYSTEM_COMMANDS = (
    (
        "system/systemctl-status.txt",
        ["systemctl", "status", "--no-pager", "himdsd", "extd", "gcad", "arcproxyd"],
    ),
    ("system/journalctl-himdsd.txt", ["journalctl", "--no-pager", "-u", "himdsd", "-n", "1000"]),
)


@dataclass(frozen=True)
class Member:
    """One archive entry: a copy of ``source`` (its last ``tail`` bytes when given), or what
    ``make`` produces when the archive is written (``None``: left out, ``absent`` says why)."""

    name: str
    source: Path | None = None
    tail: int | None = None
    make: Callable[[], bytes | None] | None = None
    absent: str = ""


@dataclass
class Record:
    """What happened to each member, for ``collection.json`` and the command's answer."""

    files: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


class Refused(Exception):
    """A source file that must not or cannot be copied; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--full", action="store_true", help="all log files, rotated ones too, whole (default: recent)"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the ZIP file, or a directory for it; default azcmagent-TIMESTAMP-COMPUTERNAME.zip here",
    )


def logs(ctx: Context, *, geteuid: EffectiveUid = os.geteuid) -> CommandResult:
    """The handler; ``geteuid`` decides who is root (injectable for tests)."""
    if geteuid() != 0:
        raise AzcmError(ErrorCode.NOT_ELEVATED, "'azcmagent logs' must run as root (use sudo)")
    now = dt.datetime.now(dt.timezone.utc)
    full = bool(getattr(ctx.args, "full", False))
    target = output_path(getattr(ctx.args, "output", None) or "", default_name(now), Path.cwd())
    members = plan(ctx.paths, full)
    record = Record()
    write_zip(target, members, forbidden_files(ctx.paths), record, full, now)
    names = [entry["name"] for entry in record.files]
    return CommandResult(
        text=f"Collected {len(names)} files into {target}", data={"path": str(target), "files": names}
    )


def default_name(now: dt.datetime) -> str:
    host = socket.gethostname().split(".", 1)[0]
    computer = re.sub(r"[^A-Za-z0-9_-]", "-", host) or "localhost"
    return f"azcmagent-{now.strftime('%Y%m%dT%H%M%SZ')}-{computer}.zip"


def output_path(given: str, name: str, cwd: Path) -> Path:
    """Where the ZIP goes: ``-o`` as a directory (default name in it) or as a file path."""
    if not given:
        return cwd / name
    path = Path(os.path.abspath(cwd / given))
    if path.is_dir():
        return path / name
    if given.endswith("/"):
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"-o/--output {given!r}: there is no such directory; create it or give a file path",
        )
    if not path.parent.is_dir():
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"-o/--output {given!r}: the directory {path.parent} does not exist; create it or "
            "choose another place",
        )
    return path


def plan(paths: AgentPaths, full: bool) -> list[Member]:
    """The members to write, in order; ``collection.json`` is added by ``write_zip``."""
    members = [
        Member(f"log/{name}", paths.log_dir / name, tail=None if full else TAIL_BYTES)
        for name in _log_names(paths.log_dir, full)
    ]
    for name, source in (
        ("agentconfig.json", paths.agent_config),
        ("localconfig.json", paths.local_config),
        ("status/himds-status.json", paths.himds_status),
        ("certs/identity.crt", paths.identity_cert),
        ("certs/credential.json", paths.credential_record),
        ("connection-ca.pem", paths.control_plane_ca),
    ):
        members.append(Member(name, source))
    members.append(Member("show.json", make=lambda: _show_json(paths)))
    for name, command in SYSTEM_COMMANDS:
        members.append(
            Member(
                name, make=functools.partial(run_command, command), absent=f"{command[0]} is not installed"
            )
        )
    return members


def _log_names(log_dir: Path, full: bool) -> list[str]:
    try:
        names = sorted(entry.name for entry in os.scandir(log_dir))
    except OSError:
        return []
    wanted = [name for name in names if CURRENT_LOG.fullmatch(name)]
    if full:
        wanted += [name for name in names if ROTATED_LOG.fullmatch(name)]
    return sorted(wanted)


def _show_json(paths: AgentPaths) -> bytes:
    try:
        document: dict[str, Any] = machine_view(paths)
    except AzcmError as error:  # a broken state is what the archive is for: record the error
        document = {"error": {"code": error.error_id, "message": error.message}}
    return (json.dumps(document, indent=2) + "\n").encode()


def run_command(argv: list[str]) -> bytes | None:
    """``$ command``, its exit code and its output (stdout, then stderr), bounded in time and size.

    None when the program is not installed.
    """
    program = shutil.which(argv[0])
    if program is None:
        return None
    header = f"$ {' '.join(argv)}\n"
    env = {**os.environ, "LC_ALL": "C", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv of ours (SYSTEM_COMMANDS), no shell
            [program, *argv[1:]],
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            env=env,
            check=False,
        )
        status = f"(exit code {done.returncode})\n"
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        status = f"(stopped after {COMMAND_TIMEOUT:g} s)\n"
        out, err = expired.stdout or b"", expired.stderr or b""
    except OSError as exc:
        status = f"(cannot run: {exc.strerror})\n"
        out = err = b""
    output = (out + err)[:COMMAND_OUTPUT_BYTES]
    return header.encode() + status.encode() + output


def forbidden_files(paths: AgentPaths) -> set[tuple[int, int]]:
    """(device, inode) of every secret file: what a log name must never turn out to be."""
    allowed = {paths.identity_cert.name, paths.credential_record.name}
    found: set[tuple[int, int]] = set()
    for directory in (paths.certs_dir, paths.tokens_dir):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if directory == paths.certs_dir and entry.name in allowed:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found.add((info.st_dev, info.st_ino))
    return found


def write_zip(
    target: Path,
    members: Iterable[Member],
    forbidden: set[tuple[int, int]],
    record: Record,
    full: bool,
    now: dt.datetime,
) -> None:
    """Write the archive beside ``target`` with mode 0600, then rename it over ``target``."""
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise _unwritable(target, exc) from None
    try:
        with os.fdopen(fd, "wb") as raw:
            os.fchmod(raw.fileno(), 0o600)  # whatever the umask
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for member in members:
                    _add(archive, member, forbidden, record)
                summary = {
                    "agentVersion": __version__,
                    "createdAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "full": full,
                    "files": [*record.files, {"name": "collection.json"}],
                    "skipped": record.skipped,
                }
                _write_data(archive, "collection.json", (json.dumps(summary, indent=2) + "\n").encode())
                record.files.append({"name": "collection.json"})
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, target)
    except (OSError, _WriteFailed) as exc:
        remove_if_present(temporary)
        raise _unwritable(target, exc.error if isinstance(exc, _WriteFailed) else exc) from None
    except BaseException:
        remove_if_present(temporary)
        raise
    sync_directory(target.parent)


def _unwritable(target: Path, exc: OSError) -> AzcmError:
    return AzcmError(
        ErrorCode.INVALID_ARGUMENT,
        f"cannot write the logs archive {target}: {exc.strerror or exc}; give a writable place with "
        "-o/--output",
    )


def _add(archive: zipfile.ZipFile, member: Member, forbidden: set[tuple[int, int]], record: Record) -> None:
    if member.make is not None:
        data = member.make()
        if data is None:
            record.skipped.append({"name": member.name, "reason": member.absent})
        else:
            _write_data(archive, member.name, data)
            record.files.append({"name": member.name, "bytes": len(data)})
        return
    assert member.source is not None
    try:
        source = _open_source(member.source, forbidden)
    except FileNotFoundError:
        record.skipped.append({"name": member.name, "reason": f"{member.source} does not exist"})
        return
    except Refused as refused:
        record.skipped.append({"name": member.name, "reason": str(refused)})
        return
    with source:
        info = os.fstat(source.fileno())
        size = info.st_size
        start = size - member.tail if member.tail is not None and size > member.tail else 0
        entry = zipfile.ZipInfo(member.name, time.localtime(max(info.st_mtime, ZIP_EPOCH))[:6])
        entry.compress_type = zipfile.ZIP_DEFLATED
        entry.external_attr = (stat.S_IFREG | 0o600) << 16
        with archive.open(entry, "w", force_zip64=size > 2**30) as sink:
            copied, read_error = _copy(source, sink, start, size)
    described: dict[str, Any] = {"name": member.name, "source": str(member.source), "bytes": copied}
    if start:
        described["truncated"] = f"the last {copied} of {size} bytes"
    if read_error:
        described["error"] = f"reading stopped after {copied} bytes: {read_error}"
    record.files.append(described)


def _open_source(path: Path, forbidden: set[tuple[int, int]]) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file, not a link and not a secret."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise Refused(f"{path} is a symbolic link; links are not followed") from None
        raise Refused(f"cannot read {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused(f"{path} is not a regular file")
    if (info.st_dev, info.st_ino) in forbidden:
        os.close(fd)
        raise Refused(f"{path} is a key file (certs/ or tokens/) under another name; keys never leave")
    return os.fdopen(fd, "rb")


def _copy(source: IO[bytes], sink: IO[bytes], start: int, size: int) -> tuple[int, str]:
    """Copy ``source[start:size]``; when ``start`` cuts a line, from the next line on.

    The bytes copied, and why reading stopped early ("" when it did not). Bytes appended after
    ``size`` (a log being written) are left for the next archive. A failure to write the
    archive is not caught here.
    """
    copied = 0
    try:
        cut_line = False
        if start > 0:
            source.seek(start - 1)
            cut_line = source.read(1) != b"\n"
        source.seek(start)
        remaining = size - start
        while remaining > 0:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            if cut_line:
                cut_line = False
                newline = chunk.find(b"\n")
                chunk = chunk[newline + 1 :] if newline >= 0 else chunk
            try:
                sink.write(chunk)
            except OSError as exc:
                raise _WriteFailed(exc) from None
            copied += len(chunk)
    except OSError as exc:
        return copied, exc.strerror or str(exc)
    return copied, ""


class _WriteFailed(Exception):
    """Writing the archive failed (not reading a source): ``write_zip`` reports the OS error."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _write_data(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(name, time.localtime()[:6])
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = (stat.S_IFREG | 0o600) << 16
    archive.writestr(entry, data)
