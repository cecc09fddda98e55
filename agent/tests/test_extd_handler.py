"""One extension handler on disk and its commands (arc_agent.extd.handler), with a real handler: a
shell script in a package, run as the handler model runs it."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest

from arc_agent.extd.handler import Handler, HandlerError

SCRIPT = """#!/bin/sh
# what the handler model gives it, and a status file for enable
echo "$1 seq=$ConfigSequenceNumber name=$ConfigExtensionName" \\
  "path=$AZURE_GUEST_AGENT_EXTENSION_PATH from=$AZURE_GUEST_AGENT_UPDATING_FROM_VERSION"
case "$1" in
  enable)
    grep -q publicSettings "config/$ConfigSequenceNumber.settings" || exit 4
    status='{"name":"x","operation":"Enable","status":"success","code":0,'
    status="$status"'"formattedMessage":{"lang":"en-US","message":"enabled with settings %s"}}'
    printf "[{\\"version\\":1.0,\\"timestampUTC\\":\\"2026-12-04T00:00:00Z\\",\\"status\\":$status}]" \\
      "$ConfigSequenceNumber" > "status/$ConfigSequenceNumber.status" ;;
  disable) exit 3 ;;
  uninstall) sleep 5 ;;
esac
"""


def package(files: dict[str, tuple[str, int]] | None = None) -> bytes:
    commands = {
        f"{verb}Command": f"bin/handler.sh {verb}"
        for verb in ("install", "enable", "disable", "uninstall", "update")
    }
    files = files or {
        "HandlerManifest.json": (json.dumps([{"version": 1.0, "handlerManifest": commands}]), 0o644),
        "bin/handler.sh": (SCRIPT, 0o755),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, (content, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


@pytest.fixture
def handler(tmp_path: Path) -> Handler:
    return Handler(
        "Microsoft.Azure.Extensions",
        "CustomScript",
        "2.1.0",
        lib_dir=tmp_path / "lib",
        log_root=tmp_path / "log",
    )


def test_a_handler_is_unpacked_configured_and_run_as_the_handler_model_has_it(handler: Handler) -> None:
    handler.unpack(package())
    assert handler.folder.name == "Microsoft.Azure.Extensions.CustomScript-2.1.0"
    assert stat.S_IMODE(handler.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(handler.config_dir.stat().st_mode) == 0o700
    environment = json.loads((handler.folder / "HandlerEnvironment.json").read_text())[0]
    assert environment["handlerEnvironment"]["statusFolder"] == str(handler.status_dir)
    assert environment["handlerEnvironment"]["logFolder"] == str(handler.log_dir) and handler.log_dir.is_dir()
    out = handler.run("install", 0, "script")
    assert out == f"install seq=0 name=script path={handler.folder} from="
    handler.write_settings(1, {"commandToExecute": "date"}, "MIIB", "9A1F")
    settings = json.loads((handler.config_dir / "1.settings").read_text())
    assert settings["runtimeSettings"][0]["handlerSettings"] == {
        "publicSettings": {"commandToExecute": "date"},
        "protectedSettings": "MIIB",
        "protectedSettingsCertThumbprint": "9A1F",
    }
    assert stat.S_IMODE((handler.config_dir / "1.settings").stat().st_mode) == 0o600
    assert handler.read_status(1) == ("", 0, "")
    handler.run("enable", 1, "script")
    status, code, message = handler.read_status(1)
    assert (status, code, message) == ("success", 0, "enabled with settings 1")
    assert "from=2.0.0" in handler.run("update", 1, "script", updating_from="2.0.0")


def test_a_failing_or_hanging_command_is_reported_with_its_output(handler: Handler) -> None:
    handler.unpack(package())
    with pytest.raises(HandlerError, match=r"disable failed with exit code 3: disable seq=2"):
        handler.run("disable", 2, "script")
    with pytest.raises(HandlerError, match=r"uninstall did not finish within 0.5 s and was stopped"):
        handler.run("uninstall", 2, "script", timeout=0.5)


def test_a_package_that_escapes_its_folder_or_lacks_a_command_is_refused(handler: Handler) -> None:
    with pytest.raises(HandlerError, match="lands outside its folder"):
        handler.unpack(package({"../evil.sh": ("x", 0o755)}))
    assert not handler.lib_dir.exists() or not list(handler.lib_dir.iterdir())
    manifest = json.dumps([{"handlerManifest": {"installCommand": "bin/x"}}])
    handler.unpack(package({"HandlerManifest.json": (manifest, 0o644)}))
    with pytest.raises(HandlerError, match="has no enableCommand"):
        handler.run("enable", 0, "script")


def test_unpacking_again_replaces_the_folder_and_a_bad_status_file_is_an_error(handler: Handler) -> None:
    handler.unpack(package())
    (handler.folder / "leftover").write_text("x")
    handler.unpack(package())
    assert not (handler.folder / "leftover").exists()
    (handler.status_dir / "4.status").write_text("not json")
    assert handler.read_status(4)[0] == "error"
    handler.remove()
    assert not handler.folder.exists()
