"""An extension change the machine does not act on fails after the control plane's operation
timeout (Azure's 6 hours; 2 seconds here, ``--extension-operation-timeout``), with a message that
says why, in the resource and in its operation; a machine that comes back later still ends it as
its handler says (docs/extensions.md, "The operation timeout")."""

from __future__ import annotations

import json
import stat
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


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    base = tmp_path_factory.mktemp("cp-timeout")
    server = start_control_plane(base, ["--extension-operation-timeout", "2"])
    package = base / "echo.zip"
    with zipfile.ZipFile(package, "w") as archive:
        commands = {
            f"{verb}Command": "bin/h.sh" for verb in ("install", "enable", "disable", "uninstall", "update")
        }
        archive.writestr("HandlerManifest.json", json.dumps([{"handlerManifest": commands}]))
        info = zipfile.ZipInfo("bin/h.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(info, "#!/bin/sh\necho late but done\n")
    published = server.cli(
        "extension", "publish", str(package), "--publisher", "Contoso", "--type", "Echo", "--version", "1.0.0"
    )
    assert published.returncode == 0, published.stderr
    yield server
    server.stop()


def start_extd(machine: Machine) -> tuple[ExtensionService, threading.Thread]:
    service = ExtensionService(machine.paths, configure_logging(verbose=True, stream=None))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    wait_for(service.registered.is_set, 60, "extd registers its extension certificate")
    return service, thread


def test_a_change_the_machine_does_not_act_on_fails_after_the_timeout(
    plane: ControlPlane, tmp_path: Path
) -> None:
    admin: Principal = plane.principal("timeout-admin", ADMIN_ROLE)
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    name = f"timeout-{uuid.uuid4().hex[:8]}"
    connect(plane, machine, tmp_path, name)
    service, thread = start_extd(machine)
    service.close()  # the machine's extension service stops (the machine is off, say)
    thread.join(15)

    body = {"location": plane.location, "properties": {"publisher": "Contoso", "type": "Echo"}}
    status, _ = plane.manage("PUT", f"machines/{name}/extensions/echo", admin, body)
    assert status == 202
    time.sleep(2.5)
    status, extension = plane.manage("GET", f"machines/{name}/extensions/echo", admin)
    assert extension["properties"]["provisioningState"] == "Failed"
    message = extension["properties"]["instanceView"]["status"]["message"]
    assert f"The machine '{name}' did not act on this change of extension 'echo' within 2 seconds" in message
    assert "azcmagent show" in message

    # The machine comes back: its extension service does the work and the resource says so.
    service, thread = start_extd(machine)
    try:
        deadline = time.monotonic() + 60
        done: dict[str, Any] = {}
        while time.monotonic() < deadline:
            _, done = plane.manage("GET", f"machines/{name}/extensions/echo", admin)
            if done["properties"]["instanceView"]["status"]["message"] == "late but done":
                break
            time.sleep(0.3)
        assert done["properties"]["provisioningState"] == "Succeeded", done
    finally:
        service.close()
        thread.join(15)
