"""One extension handler on disk, as the VM extension handler model lays it out
(docs/reference/extensions.md; W:azurelinuxagent/ga/exthandlers.py): its folder
``<lib>/<Publisher.Type>-<version>`` unpacked from the checked package, ``HandlerEnvironment.json``,
``config/<seq>.settings``, ``status/<seq>.status``, its log folder ``<logs>/<Publisher.Type>``,
and its commands run with the model's environment variables and time limits.

Files are written atomically; a package is unpacked into a staging folder beside the handler's
and renamed into place, so an interrupted unpack leaves no half handler.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from arc_agent.fsutil import write_json_atomic

LIB_DIR = Path("/var/lib/waagent")
LOG_DIR = Path("/var/log/azure")
MAX_STATUS_BYTES = 128 * 1024
TIMEOUTS = {"install": 900, "enable": 300, "disable": 900, "uninstall": 900, "update": 900}
"""Seconds each command may take (the handler model's; disable's also covers uninstall and update)."""
OUTPUT_TAIL = 4096
HEARTBEAT_STALE_SECONDS = 600
"""A heartbeat older than this says the handler is not ready (the Linux VM agent's 10 minutes)."""


def _tail(output: IO[bytes]) -> str:
    output.seek(max(0, output.seek(0, os.SEEK_END) - OUTPUT_TAIL))
    return output.read().decode("utf-8", "replace").strip()


def stop_group(pid: int) -> None:
    """Kill the process group ``pid`` leads (a handler command and its children)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class HandlerError(RuntimeError):
    """A handler command failed, timed out or the handler is malformed; the message says which."""


@dataclass(frozen=True)
class Handler:
    """Where one version of one handler lives."""

    publisher: str
    type: str
    version: str
    lib_dir: Path = LIB_DIR
    log_root: Path = LOG_DIR

    @property
    def name(self) -> str:
        return f"{self.publisher}.{self.type}"

    @property
    def folder(self) -> Path:
        return self.lib_dir / f"{self.name}-{self.version}"

    @property
    def config_dir(self) -> Path:
        return self.folder / "config"

    @property
    def status_dir(self) -> Path:
        return self.folder / "status"

    @property
    def log_dir(self) -> Path:
        return self.log_root / self.name

    @property
    def heartbeat_file(self) -> Path:
        return self.folder / "heartbeat.log"

    def manifest(self) -> dict[str, Any]:
        """``handlerManifest`` of the handler's ``HandlerManifest.json``."""
        try:
            document = json.loads((self.folder / "HandlerManifest.json").read_text(encoding="utf-8"))
            manifest = document[0]["handlerManifest"]
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise HandlerError(f"{self.folder}/HandlerManifest.json cannot be read: {exc}") from None
        if not isinstance(manifest, dict):
            raise HandlerError(f"{self.folder}/HandlerManifest.json has no handlerManifest object")
        return manifest

    def read_heartbeat(self, now: float) -> tuple[bool, str] | None:
        """(ready, message) of the handler's ``heartbeat.log`` when its manifest has
        ``reportHeartbeat``, else None. A heartbeat missing, unreadable or older than
        ``HEARTBEAT_STALE_SECONDS`` (at ``now``, a ``time.time()``) is not ready, saying why."""
        try:
            reports = self.manifest().get("reportHeartbeat") is True
        except HandlerError:
            return None
        if not reports:
            return None
        path = self.heartbeat_file
        try:
            age = now - path.stat().st_mtime
            entry = json.loads(path.read_bytes()[:MAX_STATUS_BYTES])[0]["heartbeat"]
            status = str(entry["status"]).lower()
            message = str(entry.get("message", entry.get("Message", "")))
        except FileNotFoundError:
            return False, f"{self.name} has not written its heartbeat ({path})"
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return False, f"{self.name}'s heartbeat ({path}) is not in the handler model's format"
        if age > HEARTBEAT_STALE_SECONDS:
            return False, f"{self.name}'s heartbeat is stale (last written {age / 60:.0f} minutes ago)"
        return status == "ready", message

    def unpack(self, data: bytes) -> None:
        """Put the (checked) package ``data`` in place as the handler's folder, with the folders
        of the handler model (config, status; logs), each 0700; a folder there is replaced."""
        self.lib_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=self.lib_dir))
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.infolist():
                    target = (staging / member.filename).resolve()
                    if not str(target).startswith(str(staging.resolve()) + os.sep):
                        raise HandlerError(
                            f"the package's member {member.filename!r} lands outside its folder"
                        )
                archive.extractall(staging)
                for member in archive.infolist():
                    mode = (member.external_attr >> 16) & 0o777
                    if mode and not member.is_dir():
                        os.chmod(staging / member.filename, mode & 0o755 | stat.S_IRUSR)
            for folder in (staging / "config", staging / "status"):
                folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(staging, 0o700)
            if self.folder.exists():
                shutil.rmtree(self.folder)
            os.rename(staging, self.folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.write_environment()

    def write_environment(self) -> None:
        write_json_atomic(
            self.folder / "HandlerEnvironment.json",
            [
                {
                    "name": self.name,
                    "version": 1.0,
                    "handlerEnvironment": {
                        "logFolder": str(self.log_dir),
                        "configFolder": str(self.config_dir),
                        "statusFolder": str(self.status_dir),
                        "heartbeatFile": str(self.heartbeat_file),
                        "eventsFolder": str(self.log_dir / "events"),
                    },
                }
            ],
            mode=0o600,
        )

    def write_settings(
        self, sequence: int, public: Mapping[str, Any], protected: str, thumbprint: str
    ) -> None:
        handler_settings: dict[str, Any] = {"publicSettings": dict(public)}
        if protected:
            handler_settings.update(protectedSettings=protected, protectedSettingsCertThumbprint=thumbprint)
        write_json_atomic(
            self.config_dir / f"{sequence}.settings",
            {"runtimeSettings": [{"handlerSettings": handler_settings}]},
            mode=0o600,
        )

    def read_status(self, sequence: int) -> tuple[str, int, str]:
        """(status, code, message) of ``status/<seq>.status``; ("", 0, "") when there is none."""
        path = self.status_dir / f"{sequence}.status"
        try:
            raw = path.read_bytes()[: MAX_STATUS_BYTES + 1]
        except FileNotFoundError:
            return "", 0, ""
        if len(raw) > MAX_STATUS_BYTES:
            return "error", 1, f"the handler's status file {path} is larger than 128 KB"
        try:
            entry = json.loads(raw)[0]["status"]
            status = str(entry["status"])
            code = int(entry.get("code", 0))
            message = str((entry.get("formattedMessage") or {}).get("message", ""))
        except (ValueError, KeyError, IndexError, TypeError):
            return "error", 1, f"the handler's status file {path} is not in the handler model's format"
        return status, code, message

    def environment(self, sequence: int, extension: str, updating_from: str = "") -> dict[str, str]:
        """The variables the handler model gives a command."""
        variables = {
            "AZURE_GUEST_AGENT_EXTENSION_PATH": str(self.folder),
            "AZURE_GUEST_AGENT_EXTENSION_VERSION": self.version,
            "ConfigSequenceNumber": str(sequence),
            "ConfigExtensionName": extension,
            "AZURE_GUEST_AGENT_EXTENSION_SUPPORTED_FEATURES": "[]",
        }
        if updating_from:
            variables["AZURE_GUEST_AGENT_UPDATING_FROM_VERSION"] = updating_from
        return variables

    def run(
        self,
        verb: str,
        sequence: int,
        extension: str,
        *,
        updating_from: str = "",
        extra_env: Mapping[str, str] | None = None,
        wrapper: Sequence[str] = (),
        timeout: float | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> str:
        """Run the handler's ``<verb>Command`` in its folder (through ``wrapper``, e.g. a systemd
        scope); its output's tail, or HandlerError naming the command, its exit code and that tail.
        ``on_start`` is given the command's process id as soon as it runs."""
        command = self.manifest().get(f"{verb}Command")
        if not isinstance(command, str) or not command:
            raise HandlerError(f"{self.name} {self.version} has no {verb}Command in its HandlerManifest.json")
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            **self.environment(sequence, extension, updating_from),
            **dict(extra_env or {}),
        }
        argv = [*wrapper, *shlex.split(command)]
        if not os.path.isabs(argv[len(wrapper)]):
            argv[len(wrapper)] = str(self.folder / argv[len(wrapper)])
        limit = timeout if timeout is not None else TIMEOUTS[verb]
        # The output goes to a file, not a pipe: a handler that leaves a process behind (one that
        # finishes its work in the background, as the handler model allows) keeps a pipe open,
        # and the command would seem to run until that process ends. Its own process group, so
        # that a command stopped for its time limit takes its children with it.
        with tempfile.TemporaryFile() as output:
            try:
                process = subprocess.Popen(  # noqa: S603 - the handler's own command, from its checked package
                    argv,
                    cwd=self.folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise HandlerError(f"{self.name} {verb} could not start: {exc}") from None
            if on_start is not None:
                on_start(process.pid)
            try:
                returncode = process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                stop_group(process.pid)
                process.wait()
                raise HandlerError(
                    f"{self.name} {verb} did not finish within {limit:g} s and was stopped: {_tail(output)}"
                ) from None
            tail = _tail(output)
        if returncode != 0:
            raise HandlerError(f"{self.name} {verb} failed with exit code {returncode}: {tail}")
        return tail

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
