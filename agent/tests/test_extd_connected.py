"""The extension service against a running control plane (docs/extensions.md): a connected agent,
an extension published in the catalogue and asked for through the management API, run by extd
with its protected settings readable only on the machine (with openssl, as handlers read them),
local policy, and removal."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane_env import ControlPlane, Principal, start_control_plane
from himds_helpers import wait_for
from machine_helpers import Machine, connect

from arc_agent.extd.service import ExtensionService
from arc_agent.logsetup import configure_logging

ADMIN_ROLE = "Azure Connected Machine Resource Administrator"
SCRIPT = """#!/bin/sh
case "$1" in
  enable) echo "ran with settings $ConfigSequenceNumber" ;;
esac
"""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    base = tmp_path_factory.mktemp("cp-extd")
    server = start_control_plane(base)
    commands = {
        f"{verb}Command": f"bin/handler.sh {verb}"
        for verb in ("install", "enable", "disable", "uninstall", "update")
    }
    package = base / "script.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("HandlerManifest.json", json.dumps([{"version": 1.0, "handlerManifest": commands}]))
        info = zipfile.ZipInfo("bin/handler.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(info, SCRIPT)
    published = server.cli(
        "extension", "publish", str(package), "--publisher", "Microsoft.Azure.Extensions",
        "--type", "CustomScript", "--version", "2.1.0",
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> Principal:
    return plane.principal("extd-tests-admin", ADMIN_ROLE)


@pytest.fixture
def extd(tmp_path: Path, plane: ControlPlane) -> Iterator[tuple[Machine, ExtensionService, str]]:
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    name = f"extd-{uuid.uuid4().hex[:8]}"
    connect(plane, machine, tmp_path, name)
    service = ExtensionService(machine.paths, configure_logging(verbose=True, stream=None))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    # Until then the control plane has nothing to encrypt protected settings to (409).
    wait_for(service.registered.is_set, 60, "extd registers its extension certificate")
    yield machine, service, name
    service.close()
    thread.join(15)
    assert not thread.is_alive(), "extd did not stop"


def extension(plane: ControlPlane, admin: Principal, name: str) -> tuple[int, Any]:
    return plane.manage("GET", f"machines/{name}/extensions/script", admin)


def settled(plane: ControlPlane, admin: Principal, name: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        status, body = extension(plane, admin, name)
        if status == 200 and body["properties"]["provisioningState"] in ("Succeeded", "Failed"):
            return dict(body)
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled within {seconds} s: {status} {body}")
        time.sleep(0.3)


def test_extd_runs_an_extension_with_its_protected_settings_then_removes_it(
    plane: ControlPlane, admin: Principal, extd: tuple[Machine, ExtensionService, str]
) -> None:
    machine, _service, name = extd
    body = {
        "location": plane.location,
        "properties": {
            "publisher": "Microsoft.Azure.Extensions", "type": "CustomScript", "typeHandlerVersion": "2.1",
            "settings": {"commandToExecute": "date"},
            "protectedSettings": {"token": "only-the-machine-reads-this"},
        },
    }  # fmt: skip
    status, _ = plane.manage("PUT", f"machines/{name}/extensions/script", admin, body)
    assert status == 202
    done = settled(plane, admin, name)
    assert done["properties"]["provisioningState"] == "Succeeded", done
    assert done["properties"]["instanceView"]["status"]["message"] == "ran with settings 1"
    folder = machine.paths.waagent_dir / "Microsoft.Azure.Extensions.CustomScript-2.1.0"
    handler_settings = json.loads((folder / "config" / "1.settings").read_text())["runtimeSettings"][0][
        "handlerSettings"
    ]
    thumbprint = handler_settings["protectedSettingsCertThumbprint"]
    crt, prv = (
        machine.paths.waagent_dir / f"{thumbprint}.crt",
        machine.paths.waagent_dir / f"{thumbprint}.prv",
    )
    assert stat.S_IMODE(prv.stat().st_mode) == 0o600
    clear = subprocess.run(
        ["openssl", "smime", "-decrypt", "-inform", "DER", "-recip", str(crt), "-inkey", str(prv)],
        input=base64.b64decode(handler_settings["protectedSettings"]),
        capture_output=True, check=True,
    )  # fmt: skip
    assert json.loads(clear.stdout) == {"token": "only-the-machine-reads-this"}

    status, _ = plane.manage("DELETE", f"machines/{name}/extensions/script", admin)
    assert status == 202
    deadline = time.monotonic() + 30
    while extension(plane, admin, name)[0] != 404:
        assert time.monotonic() < deadline, "not removed within 30 s"
        time.sleep(0.3)
    assert not folder.exists()


def test_local_policy_wins_and_the_refusal_names_the_setting(
    plane: ControlPlane, admin: Principal, extd: tuple[Machine, ExtensionService, str]
) -> None:
    machine, _service, name = extd
    result = machine.cli("config", "set", "extensions.blocklist", "Microsoft.Azure.Extensions/CustomScript")
    assert result.returncode == 0, result.stderr
    body = {
        "location": plane.location,
        "properties": {"publisher": "Microsoft.Azure.Extensions", "type": "CustomScript"},
    }
    assert plane.manage("PUT", f"machines/{name}/extensions/script", admin, body)[0] == 202
    done = settled(plane, admin, name)
    assert done["properties"]["provisioningState"] == "Failed"
    assert "extensions.blocklist" in done["properties"]["instanceView"]["status"]["message"]
    assert not list(machine.paths.waagent_dir.glob("Microsoft.Azure.Extensions.CustomScript-*"))
