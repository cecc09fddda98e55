"""Microsoft.Azure.Extensions.CustomScript for hybridops.arc (docs/customscript.md): a handler of
the VM extension handler model that runs a command or a script on the machine, with the public
extension's settings (docs/reference/customscript.md). Python 3.9+ standard library only, and
``openssl`` for the protected settings, as the real extension uses it.

Commands (HandlerManifest.json, through the ``bin/custom-script`` shim): install, enable, disable,
uninstall, update (``enable`` leaves the command running in a process of its own).
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse  # pathlib imports it anyway
from pathlib import Path

# Each handler command starts Python and runs in the handler's slice, whose CPU quota (5 % by
# default) turns every millisecond of CPU into 20 of waiting: what only some commands need is
# imported where it is used, and typing only for type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NAME = "Microsoft.Azure.Extensions.CustomScript"
HERE = Path(os.environ.get("AZURE_GUEST_AGENT_EXTENSION_PATH") or Path(__file__).resolve().parent.parent)
LIB = HERE.parent
"""The agent's library folder (``/var/lib/waagent``): the handler's folder is in it, and so are
the certificate and key the protected settings are encrypted to."""
STATE = LIB / "custom-script"
"""Where runs happen (``download/<seq>``) and the sequence number last run (``mrseq``)."""
UPDATING = ".updating"
"""Set by ``update`` for the old version's ``uninstall``, which then keeps the state."""
UPDATED = ".updated"
"""Set by ``update`` for the next ``enable``, which does not run settings that already ran."""
LAST_DIGEST = "lastrun.sha256"
"""SHA-256 of the settings last run (public and protected merged; the folder is root's, 0700)."""
SEQUENCE_VARIABLE = "ConfigSequenceNumber"
"""The handler model's variable with the sequence number of the settings to use."""
TAIL = 4096
DOWNLOAD_TRIES = 3
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
PUBLIC_ONLY = ("timestamp", "skipDos2Unix")
EITHER = ("commandToExecute", "script", "fileUris")
PROTECTED_ONLY = ("storageAccountName", "storageAccountKey", "managedIdentity")
WORKER = "worker"
"""The process id and start time of the command running in the background (``STATE/worker``)."""
COMMAND_LIMIT_SECONDS = int(os.environ.get("CUSTOMSCRIPT_COMMAND_LIMIT_SECONDS", "5400"))
"""How long the command may run (90 minutes, as long as Azure waits for an extension)."""


class SettingsError(ValueError):
    """The settings are not usable; the message says which and how to fix them."""


def utc_now() -> str:
    """Now, as the handler model's files write times (UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def handler_environment() -> dict[str, Any]:
    document = json.loads((HERE / "HandlerEnvironment.json").read_text(encoding="utf-8"))
    environment: dict[str, Any] = document[0]["handlerEnvironment"]
    return environment


def log(message: str) -> None:
    """One line to ``<logFolder>/handler.log`` (never settings: they may hold secrets)."""
    try:
        folder = Path(handler_environment()["logFolder"])
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = utc_now()
        with open(folder / "handler.log", "a", encoding="utf-8") as file:
            file.write(f"{stamp} [{os.environ.get(SEQUENCE_VARIABLE, '-')}] {message}\n")
    except (OSError, ValueError, KeyError, IndexError):
        pass


def write_status(sequence: str, status: str, message: str, operation: str = "Enable") -> None:
    """``status/<seq>.status`` in the handler model's shape, written atomically."""
    folder = Path(handler_environment()["statusFolder"])
    document = [
        {
            "version": 1.0,
            "timestampUTC": utc_now(),
            "status": {
                "name": NAME,
                "operation": operation,
                "status": status,
                "code": 1 if status == "error" else 0,
                "formattedMessage": {"lang": "en-US", "message": message},
            },
        }
    ]
    temporary = folder / f".{sequence}.status.tmp"
    temporary.write_text(json.dumps(document), encoding="utf-8")
    os.replace(temporary, folder / f"{sequence}.status")


def protected_settings(handler_settings: dict[str, Any]) -> dict[str, Any]:
    """The protected settings, decrypted with the machine's extension certificate (openssl)."""
    blob = handler_settings.get("protectedSettings")
    if not blob:
        return {}
    thumbprint = handler_settings.get("protectedSettingsCertThumbprint", "")
    crt, prv = LIB / f"{thumbprint}.crt", LIB / f"{thumbprint}.prv"
    if not thumbprint or not prv.exists():
        raise SettingsError(
            f"the protected settings are encrypted to certificate {thumbprint!r}, which is not in {LIB}"
        )
    # openssl from PATH, as the real extension runs it, on the machine's own files
    openssl = ["openssl", "smime", "-decrypt", "-inform", "DER", "-recip", str(crt), "-inkey", str(prv)]
    done = subprocess.run(  # noqa: S603
        openssl,  # noqa: S607
        input=binascii.a2b_base64(blob),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SettingsError(
            "the protected settings cannot be decrypted: "
            + done.stderr.decode("utf-8", "replace").strip()[:300]
        )
    value = json.loads(done.stdout)
    if not isinstance(value, dict):
        raise SettingsError("the protected settings are not a JSON object")
    return value


def read_settings(sequence: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public, protected) settings of ``config/<seq>.settings``."""
    path = Path(handler_environment()["configFolder"]) / f"{sequence}.settings"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        handler_settings = document["runtimeSettings"][0]["handlerSettings"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise SettingsError(f"{path} cannot be read: {exc}") from None
    public = handler_settings.get("publicSettings") or {}
    if not isinstance(public, dict):
        raise SettingsError("the public settings are not a JSON object")
    return public, protected_settings(handler_settings)


def merge(public: dict[str, Any], protected: dict[str, Any]) -> dict[str, Any]:
    """The public and protected settings as one, by the real extension's rules: each of
    ``commandToExecute``, ``script`` and ``fileUris`` in one of them only; exactly one of
    ``commandToExecute`` and ``script``; ``timestamp`` and ``skipDos2Unix`` public only."""
    known = set(PUBLIC_ONLY) | set(EITHER)
    unknown = sorted(set(public) - known) + sorted(set(protected) - set(EITHER) - set(PROTECTED_ONLY))
    if unknown:
        raise SettingsError(
            f"unknown setting {unknown[0]!r}; the settings are "
            + ", ".join(PUBLIC_ONLY + EITHER + PROTECTED_ONLY)
        )
    merged = dict(public)
    for key in EITHER:
        if key in public and key in protected:
            raise SettingsError(
                f"{key!r} was given in both the public and the protected settings; "
                "give it in one of them only"
            )
        if key in protected:
            merged[key] = protected[key]
    if (
        protected.get("storageAccountName")
        or protected.get("storageAccountKey")
        or protected.get("managedIdentity")
    ):
        raise SettingsError(
            "storage account and managed identity downloads need Azure Storage, which this "
            "extension does not reach; give fileUris that the machine can download directly"
        )
    command, script = merged.get("commandToExecute"), merged.get("script")
    if not command and not script:
        raise SettingsError("neither 'commandToExecute' nor 'script' is given; give one of them")
    if command and script:
        raise SettingsError("both 'commandToExecute' and 'script' are given; give only one of them")
    if command is not None and not isinstance(command, str):
        raise SettingsError("'commandToExecute' must be a string")
    uris = merged.get("fileUris", [])
    if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris):
        raise SettingsError("'fileUris' must be a list of URLs")
    for uri in uris:
        if urllib.parse.urlsplit(uri).scheme not in ("https", "http"):
            raise SettingsError(f"the file URI {uri!r} is not an https:// or http:// URL")
    timestamp = merged.get("timestamp")
    if timestamp is not None and (not isinstance(timestamp, int) or isinstance(timestamp, bool)):
        raise SettingsError("'timestamp' must be a whole number")
    if not isinstance(merged.get("skipDos2Unix", False), bool):
        raise SettingsError("'skipDos2Unix' must be true or false")
    return merged


def decode_script(value: Any) -> bytes:
    """``script``: base64, optionally of gzip-compressed text."""
    import base64  # noqa: PLC0415 - only a script needs these (see the imports above)
    import gzip  # noqa: PLC0415

    if not isinstance(value, str):
        raise SettingsError("'script' must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise SettingsError("'script' is not valid base64") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise SettingsError(f"'script' is gzip data that cannot be read: {exc}") from None
    return raw


def dos2unix(path: Path) -> None:
    """CRLF to LF and no UTF-8 byte order mark, for text files (no NUL byte)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return
    fixed = data.replace(b"\r\n", b"\n")
    if fixed.startswith(b"\xef\xbb\xbf"):
        fixed = fixed[3:]
    if fixed != data:
        path.write_bytes(fixed)


def download(uri: str, folder: Path) -> Path:
    """``uri`` into ``folder`` under its last path segment, with the machine's trusted CAs;
    tried three times."""
    import ssl  # noqa: PLC0415 - only a download needs these (see the imports above)
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path)).name
    if not name or name in (".", ".."):
        raise SettingsError(f"the file URI {uri!r} does not end in a file name")
    target = folder / name
    context = ssl.create_default_context()
    error = ""
    for attempt in range(DOWNLOAD_TRIES):
        try:
            with urllib.request.urlopen(uri, timeout=60, context=context) as reply:  # noqa: S310
                data = reply.read(MAX_DOWNLOAD_BYTES + 1)
            if len(data) > MAX_DOWNLOAD_BYTES:
                raise SettingsError(f"{uri} is larger than {MAX_DOWNLOAD_BYTES} bytes")
            target.write_bytes(data)
            return target
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500:
                break
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
        time.sleep(2 * (attempt + 1))
    redacted = uri.split("?", 1)[0]  # a SAS token or a secret may be in the query
    raise SettingsError(f"the file {redacted} could not be downloaded: {error}")


def tail(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - TAIL))
            return file.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run(settings: dict[str, Any], folder: Path) -> tuple[int, str]:
    """Download the files, write the script, run the command or script in ``folder`` with its
    output in ``stdout`` and ``stderr`` there; (exit code, the output's tails as the real one shows them)."""
    for uri in settings.get("fileUris", []):
        path = download(uri, folder)
        if not settings.get("skipDos2Unix", False):
            dos2unix(path)
    if settings.get("script"):
        script = folder / "script.sh"
        script.write_bytes(decode_script(settings["script"]))
        if not settings.get("skipDos2Unix", False):
            dos2unix(script)
        argv: list[str] = ["/bin/sh", str(script)]
    else:
        argv = ["/bin/sh", "-c", settings["commandToExecute"]]
    with open(folder / "stdout", "wb") as out, open(folder / "stderr", "wb") as err:
        # Its own process group (so a timeout stops it and what it started) in the worker's
        # session (so stopping the worker finds it): not a session of its own, which would hide it.
        process = subprocess.Popen(  # noqa: S603 - running the operator's command is the point
            argv, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=os.setpgrp
        )
        try:
            code = process.wait(timeout=COMMAND_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            stop_group(process.pid)
            process.wait()
            raise SettingsError(
                f"the command did not finish within {COMMAND_LIMIT_SECONDS // 60} minutes and was stopped"
                f"\n[stdout]\n{tail(folder / 'stdout')}\n[stderr]\n{tail(folder / 'stderr')}"
            ) from None
    return code, f"\n[stdout]\n{tail(folder / 'stdout')}\n[stderr]\n{tail(folder / 'stderr')}"


def process_start(pid: int) -> str:
    """When process ``pid`` started (``/proc/<pid>/stat``); "" when it does not run."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    rest = fields[fields.rfind(")") + 2 :].split()
    return "" if not rest or rest[0] == "Z" else rest[19]


def stop_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_session(session: int) -> None:
    """Kill every process of ``session``: the worker, the command and what the command started
    (all of them, whatever process group they are in, as long as they stayed in the session)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and fields[3] == str(session):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def stop_worker(why: str) -> None:
    """Stop the command still running in the background (its status says why)."""
    try:
        pid_text, started, sequence = read_text(STATE / WORKER).split()
        pid = int(pid_text)
    except ValueError:
        return
    if process_start(pid) == started:
        log(f"stopping the command of sequence number {sequence} (process {pid}): {why}")
        stop_session(pid)
        write_status(sequence, "error", f"Enable failed: the command was stopped: {why}")
    (STATE / WORKER).unlink(missing_ok=True)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="ascii")
    os.replace(temporary, path)


def enable() -> int:
    sequence = os.environ.get(SEQUENCE_VARIABLE, "0")
    try:
        last = int(read_text(STATE / "mrseq"))
    except ValueError:
        last = -1
    if int(sequence) <= last:
        log(f"sequence number {sequence} already ran (last {last}); not running it again")
        return 0
    try:
        settings = merge(*read_settings(sequence))
    except SettingsError as exc:
        log(f"invalid settings: {exc}")
        write_status(sequence, "error", f"Enable failed: {exc}")
        return 1
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    if (STATE / UPDATED).exists():
        # The first enable after a version update: the agent gives it a new sequence number, but
        # settings that already ran do not run again (only new settings or a new timestamp do).
        (STATE / UPDATED).unlink()
        if read_text(STATE / LAST_DIGEST) == digest:
            log(
                f"sequence number {sequence}: the settings that ran before the update; not running them again"
            )
            write_text(STATE / "mrseq", sequence)
            write_status(
                sequence,
                "success",
                "Enable succeeded: updated; the settings ran before the update and were not run again",
            )
            return 0
    stop_worker(f"a new configuration came (sequence number {sequence})")
    # Recorded before it runs: a configuration runs once, also if the machine restarts meanwhile.
    write_text(STATE / "mrseq", sequence)
    write_text(STATE / LAST_DIGEST, digest)
    write_status(sequence, "transitioning", "Enable in progress")
    # The command runs in the background, as the real extension runs it: enable returns now, and
    # the agent follows the status file until it says how the command ended. A fork: the settings
    # are not read (nor decrypted) again, and no interpreter starts again.
    ready, go = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(go)
            os.read(ready, 1)  # until the parent has named this process in STATE/worker
            os.close(ready)
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            code = run_in_background(sequence, settings)
        finally:
            os._exit(code)
    os.close(ready)
    write_text(STATE / WORKER, f"{pid} {process_start(pid) or '0'} {sequence}")
    os.close(go)
    log(f"the command runs in the background (process {pid})")
    return 0


def run_in_background(sequence: str, settings: dict[str, Any]) -> int:
    """The command of ``sequence``, in the process ``enable`` forked; its status at the end."""
    import shutil  # noqa: PLC0415 - the worker only (see the imports above)

    folder = STATE / "download" / sequence
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    try:
        log("running the " + ("script" if settings.get("script") else "command"))
        code, output = run(settings, folder)
    except SettingsError as exc:
        log(str(exc))
        write_status(sequence, "error", f"Enable failed: {exc}")
        return 1
    finally:
        if read_text(STATE / WORKER).split()[:1] == [str(os.getpid())]:
            (STATE / WORKER).unlink(missing_ok=True)
    if code != 0:
        log(f"the command exited {code}")
        write_status(
            sequence,
            "error",
            f"Enable failed: failed to execute command: command terminated with exit status={code}{output}",
        )
        return 1
    log("the command succeeded")
    write_status(sequence, "success", f"Enable succeeded: {output}")
    return 0


def main(argv: list[str]) -> int:
    verb = argv[1] if len(argv) > 1 else ""
    if verb == "install":
        STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
        log(f"installed {os.environ.get('AZURE_GUEST_AGENT_EXTENSION_VERSION', '')}")
        return 0
    if verb == "enable":
        STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
        return enable()
    if verb == "disable":
        stop_worker("the extension is disabled")
        log("disabled")
        return 0
    if verb == "update":
        # The old version's uninstall comes next: it must keep what ran (mrseq), or the new
        # version would run the same command again.
        STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_text(STATE / UPDATING, os.environ.get("AZURE_GUEST_AGENT_UPDATING_FROM_VERSION", ""))
        write_text(STATE / UPDATED, "")
        log(f"updated from {os.environ.get('AZURE_GUEST_AGENT_UPDATING_FROM_VERSION', '?')}")
        return 0
    if verb == "uninstall":
        # Only the version an update came from keeps the state (the marker names it): a marker
        # that an interrupted update left behind does not keep a real removal from cleaning up.
        updated_from = read_text(STATE / UPDATING)
        (STATE / UPDATING).unlink(missing_ok=True)
        if updated_from and updated_from == os.environ.get("AZURE_GUEST_AGENT_EXTENSION_VERSION"):
            log("uninstall of the version updated from: the state stays for the new one")
            return 0
        stop_worker("the extension is removed")
        import shutil  # noqa: PLC0415 - uninstall only (see the imports above)

        shutil.rmtree(STATE, ignore_errors=True)
        log("uninstalled: the downloads and their output are removed")
        return 0
    sys.stderr.write(f"usage: {argv[0]} install|enable|disable|uninstall|update\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
