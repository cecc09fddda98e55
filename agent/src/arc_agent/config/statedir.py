"""The state directory: who owns what in it, and the lock its writers hold.

Ownership (issue 10, finding 3). Root trusts some files of ``/var/opt/azcmagent``: the
connection state names the control plane that ``disconnect`` sends an administrator's secret
to, and the CA copy says which server is that control plane. When the directory belonged to
``himds``, that account could replace both and capture the secret. So root owns the directory
and every file it trusts; ``himds`` owns only the directories of what it writes itself.
:func:`secure` puts a host in that shape (the role's service step does the same, and every
command run as root calls it, so a host installed by an earlier release is mended by the first
one): missing directories are made, owners and modes set through a descriptor opened without
following links, a link found where a directory belongs is removed, a trusted file that is not
root's is set aside (never used), and the CA copy of earlier releases (in ``certs/``, which
himds controls) is removed.

The lock (issue 10, finding 5). Twenty ``azcmagent config set`` at once used to lose changes:
each read the settings, changed one, and wrote them back over the others' work. Whoever changes
the agent's state (``config set|clear``, ``connect``, ``disconnect``, himds when it switches to
a renewed credential) holds an exclusive ``flock`` on ``agent.lock`` for the whole
read-modify-write (:func:`state_lock`); readers need none, since files are replaced atomically.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.fsutil import flock_within
from arc_agent.paths import AgentPaths
from arc_agent.privileges import himds_ids

LOG = logging.getLogger("arc_agent.config.statedir")
LOCK_TIMEOUT_SECONDS = 120.0
LOCK_POLL_SECONDS = 0.02
LOCK_FILE_MODE = 0o640


@dataclass(frozen=True)
class _Dir:
    path: Path
    owner_is_himds: bool
    mode: int


def _layout(paths: AgentPaths) -> tuple[_Dir, ...]:
    return (
        _Dir(paths.state_dir, False, 0o755),
        _Dir(paths.certs_dir, True, 0o750),
        _Dir(paths.tokens_dir, True, 0o750),
        _Dir(paths.socks_dir, True, 0o750),
        _Dir(paths.status_dir, True, 0o755),
        _Dir(paths.log_dir, False, 0o1775),
    )


def trusted_files(paths: AgentPaths) -> tuple[Path, ...]:
    """The files root trusts: root-owned, in the root-owned state directory."""
    return (paths.agent_config, paths.local_config, paths.control_plane_ca)


def secure(paths: AgentPaths) -> list[str]:
    """As root: the layout above, made or mended; what was changed, one line each."""
    uid, gid = himds_ids() or (0, 0)
    changes: list[str] = []
    paths.state_dir.parent.mkdir(parents=True, exist_ok=True)
    for wanted in _layout(paths):
        owner = uid if wanted.owner_is_himds else 0
        changes += _directory(wanted.path, owner, gid, wanted.mode)
    for trusted in trusted_files(paths):
        changes += _set_aside_if_untrusted(trusted)
    _lock_file(paths.lock_file, gid)
    if paths.legacy_control_plane_ca.exists() or paths.legacy_control_plane_ca.is_symlink():
        paths.legacy_control_plane_ca.unlink(missing_ok=True)  # another command may be first
        changes.append(f"removed {paths.legacy_control_plane_ca} (himds could change it; never trusted)")
    for change in changes:
        LOG.warning("state directory: %s", change)
    return changes


def problems(paths: AgentPaths) -> list[str]:
    """What :func:`secure` would change, without changing anything (``show`` reports it)."""
    uid, gid = himds_ids() or (0, 0)
    found = []
    for wanted in _layout(paths):
        owner = uid if wanted.owner_is_himds else 0
        try:
            info = wanted.path.lstat()
        except FileNotFoundError:
            found.append(f"{wanted.path} is missing")
            continue
        if not stat.S_ISDIR(info.st_mode):
            found.append(f"{wanted.path} is not a directory")
        elif (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (owner, gid, wanted.mode):
            found.append(
                f"{wanted.path} is {info.st_uid}:{info.st_gid} {stat.S_IMODE(info.st_mode):o}, "
                f"not {owner}:{gid} {wanted.mode:o}"
            )
    for trusted in trusted_files(paths):
        try:
            info = trusted.lstat()
        except FileNotFoundError:
            continue
        if not _is_trusted(info):
            found.append(f"{trusted} is not a file of root's own")
    if paths.legacy_control_plane_ca.exists():
        found.append(f"{paths.legacy_control_plane_ca} is left from an earlier release")
    return found


def _directory(path: Path, owner: int, group: int, mode: int) -> list[str]:
    """``path`` a directory with this owner, group and mode (made if missing); what was mended."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    changes = []
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # another command made it first: check it as one found
            return _directory(path, owner, group, mode)
        fd = os.open(path, flags)
        os.fchown(fd, owner, group)
        os.fchmod(fd, mode)
        os.close(fd)
        return []
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        path.unlink()  # a link or a file where a directory belongs: never followed
        changes.append(f"removed {path}, which was not a directory")
        return changes + _directory(path, owner, group, mode)
    try:
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != (owner, group):
            os.fchown(fd, owner, group)
            changes.append(f"{path} was owned by {info.st_uid}:{info.st_gid}, now {owner}:{group}")
        if stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)
            changes.append(f"{path} had mode {stat.S_IMODE(info.st_mode):o}, now {mode:o}")
    finally:
        os.close(fd)
    return changes


def _set_aside_if_untrusted(path: Path) -> list[str]:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return []
    if _is_trusted(info):
        return []
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.untrusted-{stamp}")
    try:
        os.rename(path, aside)  # renames the entry itself, never what a link points to
    except FileNotFoundError:  # another command set it aside first
        return []
    os.lchown(aside, 0, 0)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(aside, 0o600)
    return [f"{path} was not a file of root's own (owner {info.st_uid}); set aside as {aside.name}, not used"]


def _is_trusted(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode) and info.st_uid == 0 and info.st_nlink == 1 and not info.st_mode & 0o022


def _lock_file(path: Path, group: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, LOCK_FILE_MODE)
    try:
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (0, group, LOCK_FILE_MODE):
            os.fchown(fd, 0, group)
            os.fchmod(fd, LOCK_FILE_MODE)
    finally:
        os.close(fd)


@contextlib.contextmanager
def state_lock(
    paths: AgentPaths,
    *,
    code: ErrorCode = ErrorCode.LOCAL_CONFIG_UPDATE_FAILED,
    timeout: float = LOCK_TIMEOUT_SECONDS,
) -> Iterator[None]:
    """Hold the agent's state lock (exclusive ``flock`` on ``agent.lock``) for the block.

    Waits up to ``timeout`` seconds for another holder, then fails with ``code`` naming the
    lock. Root creates the file if it is missing; himds opens it read-only (enough for flock).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        if os.geteuid() == 0:
            fd = os.open(paths.lock_file, flags | os.O_CREAT, LOCK_FILE_MODE)
        else:
            fd = os.open(paths.lock_file, flags)
    except OSError as exc:
        raise AzcmError(
            code,
            f"cannot open the agent's lock file {paths.lock_file}: {exc.strerror}; reinstall the agent "
            "(or run any azcmagent command as root) to restore it",
        ) from None
    try:
        if not flock_within(fd, timeout, LOCK_POLL_SECONDS):
            raise AzcmError(
                code,
                f"another azcmagent command (or himds) has been changing the agent's state for "
                f"{timeout:g} s (it holds {paths.lock_file}); wait for it and try again "
                f"('fuser -v {paths.lock_file}' names it)",
            )
        yield
    finally:
        os.close(fd)  # releases the lock
