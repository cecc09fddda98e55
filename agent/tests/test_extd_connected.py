"""The extension service against a running control plane (docs/extensions.md): a connected agent,
an extension published in the catalogue and asked for through the management API, run by extd
with its protected settings readable only on the machine (with openssl, as handlers read them),
local policy, and removal."""

from __future__ import annotations

import base64
import hashlib
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
from upgrade_helpers import agent_bundle

from arc_agent.cpclient.machine import open_machine_api
from arc_agent.errors import AzcmError
from arc_agent.extd.service import ExtensionService
from arc_agent.logsetup import configure_logging
from arc_agent.upgrade import store

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


def test_the_desired_version_is_fetched_checked_and_started_once(
    extd: tuple[Machine, ExtensionService, str], plane: ControlPlane, admin: Principal, tmp_path: Path
) -> None:
    """docs/agent-upgrade.md: ``agentUpgrade.desiredVersion`` set through the management API wakes
    extd, which starts ``azcmagent upgrade --version V --background`` with the correlation id,
    once; the package the store serves downloads and verifies with the control plane's signature."""
    machine, service, name = extd
    published = plane.cli("agent", "publish", str(agent_bundle(tmp_path / "bundle", "9.1.0.7")))
    assert published.returncode == 0, published.stderr
    # the agent's CLI is the boundary here: a script that records how it is called
    calls = tmp_path / "calls"
    cli = machine.paths.install_dir / "bin" / "azcmagent"
    cli.parent.mkdir(parents=True, exist_ok=True)
    cli.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho started\n')
    cli.chmod(0o755)
    unknown = {"properties": {"agentUpgrade": {"desiredVersion": "9.2.0.0"}}}
    status, refused = plane.manage("PATCH", f"machines/{name}", admin, unknown)
    assert status == 400 and refused["error"]["code"] == "InvalidAgentVersion", refused
    correlation = str(uuid.uuid4())
    body = {"properties": {"agentUpgrade": {"desiredVersion": "9.1.0.7", "correlationId": correlation}}}
    plane.patch_machine(name, body, admin)
    wait_for(calls.exists, 30, "extd starts the upgrade")
    time.sleep(2)
    assert calls.read_text().split("\n") == [
        f"upgrade --version 9.1.0.7 --background --correlation-id {correlation}",
        "",
    ]
    # the same request answered (the attempt recorded with its correlation id) is not started again
    (machine.paths.upgrade_status).write_text(
        json.dumps(
            {
                "lastAttemptDesiredVersion": "9.1.0.7",
                "lastAttemptStatus": "Failed",
                "correlationId": correlation,
            }
        )
    )
    service.upgrade_started = None
    plane.patch_machine(name, {"tags": {"poke": "1"}}, admin)
    time.sleep(3)
    assert calls.read_text().count("upgrade") == 1

    opened = open_machine_api(machine.paths)
    assert opened is not None
    client, api = opened
    try:
        downloaded = store.download(api, "9.1", tmp_path / "downloads")
        assert downloaded.version == "9.1.0.7"
        assert hashlib.sha256(downloaded.path.read_bytes()).hexdigest() == downloaded.sha256
        with pytest.raises(
            AzcmError, match=r"publishes no agent 9\.3 for this machine .*published: 9\.1\.0\.7"
        ):
            store.download(api, "9.3", tmp_path / "downloads")
    finally:
        client.close()


def test_an_automatic_upgrade_is_taken_when_the_rollout_offers_it(
    extd: tuple[Machine, ExtensionService, str], plane: ControlPlane, admin: Principal, tmp_path: Path
) -> None:
    """docs/agent-upgrade.md, "Automatic upgrades": ``enableAutomaticUpgrade`` (through the
    management API, or ``connect --enable-automatic-upgrade``) makes the machine take the version
    the rollout offers it."""
    machine, _, name = extd
    published = plane.cli("agent", "publish", str(agent_bundle(tmp_path / "bundle", "9.5.0.1")))
    assert published.returncode == 0, published.stderr
    calls = tmp_path / "calls"
    cli = machine.paths.install_dir / "bin" / "azcmagent"
    cli.parent.mkdir(parents=True, exist_ok=True)
    cli.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    cli.chmod(0o755)
    plane.patch_machine(name, {"properties": {"agentUpgrade": {"enableAutomaticUpgrade": True}}}, admin)
    wait_for(calls.exists, 60, "extd takes the offered version")
    assert calls.read_text().splitlines()[0].startswith("upgrade --version 9.5.0.1 --background")

    other = Machine(tmp_path / "other")
    other.paths.state_dir.mkdir(parents=True)
    connect(plane, other, tmp_path, f"auto-{uuid.uuid4().hex[:8]}", "--enable-automatic-upgrade")
    shown = json.loads(other.cli("show", "resourceName", "-j").stdout)["resourceName"]
    resource = plane.machine(shown, admin)
    assert resource is not None
    assert resource["properties"]["agentUpgrade"] == {"enableAutomaticUpgrade": True}
