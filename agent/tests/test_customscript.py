"""The CustomScript extension shipped with the repository (extensions/customscript,
docs/customscript.md), built as `make extensions` builds it, published into a running control
plane, asked for through the management API and run by extd: the real extension's settings
(protected command, gzip script, timestamp, the public/protected rules), its status messages
with the output's tails, a failing command, the minor upgrade 2.1 -> 2.2 and removal."""

from __future__ import annotations

import base64
import gzip
import subprocess
import sys
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
from test_proxy import Tinyproxy

from arc_agent.extd.handler import Handler
from arc_agent.extd.service import ExtensionService
from arc_agent.logsetup import configure_logging
from arc_agent.processes import process_start

TOP = Path(__file__).resolve().parents[2]
ADMIN_ROLE = "Azure Connected Machine Resource Administrator"
CSE = ("Microsoft.Azure.Extensions", "CustomScript")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    base = tmp_path_factory.mktemp("cp-cse")
    server = start_control_plane(base)
    packages = base / "packages"
    subprocess.run([sys.executable, str(TOP / "tools/build-extensions.py"), str(packages)], check=True)
    for version in ("2.1.0", "2.2.0"):
        published = server.cli(
            "extension", "publish", str(packages / f"{CSE[0]}.{CSE[1]}-{version}.zip"),
            "--publisher", CSE[0], "--type", CSE[1], "--version", version,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> Principal:
    return plane.principal("cse-tests-admin", ADMIN_ROLE)


@pytest.fixture
def extd(tmp_path: Path, plane: ControlPlane) -> Iterator[tuple[Machine, str]]:
    machine = Machine(tmp_path / "root")
    machine.paths.state_dir.mkdir(parents=True)
    name = f"cse-{uuid.uuid4().hex[:8]}"
    connect(plane, machine, tmp_path, name)
    service = ExtensionService(machine.paths, configure_logging(verbose=True, stream=None))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    wait_for(service.registered.is_set, 60, "extd registers its extension certificate")
    yield machine, name
    service.close()
    thread.join(15)


def put(
    plane: ControlPlane,
    admin: Principal,
    name: str,
    settings: dict[str, Any],
    protected: dict[str, Any] | None = None,
    version: str = "2.1",
) -> dict[str, Any]:
    """PUT the extension and wait until it has settled; the extension."""
    properties: dict[str, Any] = {
        "publisher": CSE[0], "type": CSE[1], "typeHandlerVersion": version, "settings": settings,
    }  # fmt: skip
    if protected is not None:
        properties["protectedSettings"] = protected
    status, _ = plane.manage(
        "PUT",
        f"machines/{name}/extensions/cse",
        admin,
        {"location": plane.location, "properties": properties},
    )
    assert status in (200, 202), status  # 200: the same as before, nothing to do
    return settled(plane, admin, name)


def settled(plane: ControlPlane, admin: Principal, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status, body = plane.manage("GET", f"machines/{name}/extensions/cse", admin)
        if status == 200 and body["properties"]["provisioningState"] in ("Succeeded", "Failed"):
            return dict(body)
        assert time.monotonic() < deadline, f"not settled within 60 s: {status} {body}"
        time.sleep(0.3)


def message(extension: dict[str, Any]) -> str:
    return str(extension["properties"]["instanceView"]["status"]["message"])


def test_customscript_runs_commands_and_scripts_as_the_real_one(
    plane: ControlPlane, admin: Principal, extd: tuple[Machine, str]
) -> None:
    machine, name = extd
    lib = machine.paths.waagent_dir
    marker = machine.root / "ran.txt"

    # A protected command: it runs, its output's tails are the status message.
    done = put(
        plane, admin, name, {}, {"commandToExecute": f"echo secret-run >> {marker}; echo out; echo err >&2"}
    )
    assert done["properties"]["provisioningState"] == "Succeeded", done
    assert message(done) == "Enable succeeded: \n[stdout]\nout\n\n[stderr]\nerr\n"
    assert marker.read_text() == "secret-run\n"
    run_dir = lib / "custom-script" / "download" / "1"
    assert (run_dir / "stdout").read_text() == "out\n"

    # The same settings again: nothing runs again. A new timestamp: it runs again.
    same = put(
        plane, admin, name, {}, {"commandToExecute": f"echo secret-run >> {marker}; echo out; echo err >&2"}
    )
    assert same["properties"]["provisioningState"] == "Succeeded"
    assert marker.read_text() == "secret-run\n"
    again = put(plane, admin, name, {"timestamp": 2}, {"commandToExecute": f"echo again >> {marker}"})
    assert again["properties"]["provisioningState"] == "Succeeded", again
    assert marker.read_text() == "secret-run\nagain\n"

    # A script, gzip-compressed and base64-encoded, with Windows line ends (dos2unix'd).
    script = f"#!/bin/sh\r\necho from-script >> {marker}\r\necho scripted\r\n".encode()
    encoded = base64.b64encode(gzip.compress(script)).decode()
    scripted = put(plane, admin, name, {"script": encoded})
    assert scripted["properties"]["provisioningState"] == "Succeeded", scripted
    assert "[stdout]\nscripted\n" in message(scripted)
    assert marker.read_text().endswith("from-script\n")

    # A command that fails: Failed, with the exit status and its stderr's tail.
    failed = put(plane, admin, name, {"commandToExecute": "echo cannot >&2; exit 3"})
    assert failed["properties"]["provisioningState"] == "Failed"
    assert message(failed).startswith(
        "Enable failed: failed to execute command: command terminated with exit status=3"
    )
    assert message(failed).endswith("[stderr]\ncannot\n")

    # The real extension's rules for settings: refused with what to fix, nothing runs.
    both = put(plane, admin, name, {"commandToExecute": "true", "timestamp": 5}, {"commandToExecute": "true"})
    assert both["properties"]["provisioningState"] == "Failed"
    assert "'commandToExecute' was given in both the public and the protected settings" in message(both)
    neither = put(plane, admin, name, {"timestamp": 6})
    assert "neither 'commandToExecute' nor 'script' is given" in message(neither)
    bad_script = put(plane, admin, name, {"script": "not base64!"})
    assert "'script' is not valid base64" in message(bad_script)
    unknown = put(plane, admin, name, {"commandToExecute": "true", "commandToRun": "x"})
    assert "unknown setting 'commandToRun'" in message(unknown)


def test_customscript_minor_upgrade_keeps_what_ran_and_removal_leaves_nothing(
    plane: ControlPlane, admin: Principal, extd: tuple[Machine, str]
) -> None:
    machine, name = extd
    lib = machine.paths.waagent_dir
    marker = machine.root / "ran.txt"
    done = put(plane, admin, name, {"commandToExecute": f"echo once >> {marker}"})
    assert done["properties"]["provisioningState"] == "Succeeded", done
    assert (lib / f"{CSE[0]}.{CSE[1]}-2.1.0").is_dir()

    target = {"extensionTargets": {f"{CSE[0]}.{CSE[1]}": {"targetVersion": "2.2"}}}
    assert plane.manage("POST", f"machines/{name}/upgradeExtensions", admin, target)[0] in (200, 202)
    wait_for(lambda: (lib / f"{CSE[0]}.{CSE[1]}-2.2.0").is_dir(), 60, "the 2.2 handler")
    upgraded = settled(plane, admin, name)
    assert upgraded["properties"]["provisioningState"] == "Succeeded", upgraded
    assert upgraded["properties"]["instanceView"]["typeHandlerVersion"].startswith("2.2")
    assert not (lib / f"{CSE[0]}.{CSE[1]}-2.1.0").exists()
    assert marker.read_text() == "once\n", "the upgrade must not run the command again"

    assert plane.manage("DELETE", f"machines/{name}/extensions/cse", admin)[0] == 202
    deadline = time.monotonic() + 30
    while plane.manage("GET", f"machines/{name}/extensions/cse", admin)[0] != 404:
        assert time.monotonic() < deadline, "not removed within 30 s"
        time.sleep(0.3)
    assert not list(lib.glob(f"{CSE[0]}.{CSE[1]}-*"))
    assert not (lib / "custom-script").exists(), "the uninstall removes the runs and their output"


def current(plane: ControlPlane, admin: Principal, name: str) -> dict[str, Any]:
    status, body = plane.manage("GET", f"machines/{name}/extensions/cse", admin)
    assert status == 200, (status, body)
    return dict(body)


def test_customscript_runs_its_command_in_the_background_and_extd_follows_it(
    plane: ControlPlane, admin: Principal, extd: tuple[Machine, str]
) -> None:
    """As the real extension: enable starts the command and returns; the status says
    "transitioning" until the command ends (so commands may run longer than enable's 300 s)."""
    machine, name = extd
    gate, marker, shell = machine.root / "go", machine.root / "ran.txt", machine.root / "shell.pid"
    waiting = (
        f"echo $$ > {shell}; while [ ! -e {gate} ]; do sleep 0.05; done; echo finished; echo $$ >> {marker}"
    )
    properties: dict[str, Any] = {"publisher": CSE[0], "type": CSE[1], "typeHandlerVersion": "2.1"}
    body: dict[str, Any] = {
        "location": plane.location,
        "properties": {**properties, "settings": {"commandToExecute": waiting}},
    }
    assert plane.manage("PUT", f"machines/{name}/extensions/cse", admin, body)[0] in (200, 201, 202)
    wait_for(
        lambda: current(plane, admin, name)["properties"].get("instanceView", {}).get("status", {}).get(
            "displayStatus") == "Transitioning",
        60, "the transitioning status of the command running in the background",
    )  # fmt: skip
    running = current(plane, admin, name)["properties"]
    assert (running["provisioningState"], message({"properties": running})) == (
        "Creating",
        "Enable in progress",
    )
    gate.write_text("")
    done = settled(plane, admin, name)
    assert done["properties"]["provisioningState"] == "Succeeded", done
    assert message(done) == "Enable succeeded: \n[stdout]\nfinished\n\n[stderr]\n"

    # A new configuration while a command still runs: that one is stopped, the new one runs.
    gate.unlink()
    body["properties"]["settings"] = {"commandToExecute": waiting, "timestamp": 2}
    assert plane.manage("PUT", f"machines/{name}/extensions/cse", admin, body)[0] == 202
    worker = machine.paths.waagent_dir / "custom-script" / "worker"
    shell.unlink()
    wait_for(worker.exists, 60, "the command of sequence number 2 runs")
    wait_for(shell.exists, 60, "the shell of sequence number 2 runs")
    first, first_shell = int(worker.read_text().split()[0]), int(shell.read_text())
    body["properties"]["settings"] = {"commandToExecute": f"echo replaced >> {marker}", "timestamp": 3}
    assert plane.manage("PUT", f"machines/{name}/extensions/cse", admin, body)[0] == 202
    replaced = settled(plane, admin, name)
    assert replaced["properties"]["provisioningState"] == "Succeeded", replaced
    assert not process_start(first), "the worker of the older configuration was stopped"
    assert not process_start(first_shell), "the command of the older configuration was stopped"
    assert marker.read_text().splitlines()[1:] == ["replaced"]

    # Removal while a command runs: it is stopped, and nothing is left.
    body["properties"]["settings"] = {"commandToExecute": waiting, "timestamp": 4}
    assert plane.manage("PUT", f"machines/{name}/extensions/cse", admin, body)[0] == 202
    shell.unlink()
    wait_for(worker.exists, 60, "the command of sequence number 4 runs")
    wait_for(shell.exists, 60, "the shell of sequence number 4 runs")
    last, last_shell = int(worker.read_text().split()[0]), int(shell.read_text())
    assert plane.manage("DELETE", f"machines/{name}/extensions/cse", admin)[0] == 202
    wait_for(lambda: plane.manage("GET", f"machines/{name}/extensions/cse", admin)[0] == 404, 60, "removed")
    assert not process_start(last), "the removal stopped the worker"
    assert not process_start(last_shell), "the removal stopped the running command"
    assert not (machine.paths.waagent_dir / "custom-script").exists()


def test_customscript_takes_the_agents_proxy(
    plane: ControlPlane, admin: Principal, extd: tuple[Machine, str], tmp_path: Path
) -> None:
    """Handlers' own downloads (``fileUris``, through Python's urllib, which reads
    ``HTTPS_PROXY``) take the agent's way out: extd gives every handler command the proxy of
    ``proxy.url`` (docs/proxy.md); the command CustomScript runs sees it too."""
    machine, name = extd
    proxy = Tinyproxy(tmp_path / "proxy", int(plane.url.rsplit(":", 1)[1]))
    try:
        assert machine.cli("config", "set", "proxy.url", proxy.url).returncode == 0
        done = put(plane, admin, name, {"commandToExecute": 'echo "$HTTPS_PROXY $https_proxy"'})
        assert done["properties"]["provisioningState"] == "Succeeded", done
        assert f"[stdout]\n{proxy.url} {proxy.url}\n" in message(done)
        assert machine.cli("config", "clear", "proxy.url").returncode == 0
        direct = put(plane, admin, name, {"commandToExecute": 'echo "[$HTTPS_PROXY]"', "timestamp": 2})
        assert "[stdout]\n[]\n" in message(direct), "no proxy: none given"
    finally:
        proxy.stop()


OLDEST_PYTHONS = sorted(Path.home().glob(".pyenv/versions/3.9.*/bin/python3.9"))
"""The oldest Python the agent supports (docs/support.md: Debian 11's 3.9), from the image's pyenv."""


def test_customscript_runs_on_the_oldest_python_the_agent_supports(tmp_path: Path) -> None:
    """The handler runs with the machine's own python3 (``bin/custom-script``): 3.9 on Debian 11,
    3.10 on Ubuntu 22.04. Run as extd runs it, with a 3.9 first on PATH."""
    if not OLDEST_PYTHONS:
        pytest.fail("no Python 3.9 in ~/.pyenv/versions: the image's pyenv has one (docs/support.md)")
    packages = tmp_path / "packages"
    subprocess.run([sys.executable, str(TOP / "tools/build-extensions.py"), str(packages)], check=True)
    handler = Handler(*CSE, "2.1.0", lib_dir=tmp_path / "lib", log_root=tmp_path / "log")
    with zipfile.ZipFile(packages / f"{CSE[0]}.{CSE[1]}-2.1.0.zip") as package:
        package.extractall(handler.folder)
    for folder in (handler.config_dir, handler.status_dir, handler.log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    (handler.folder / "bin" / "custom-script").chmod(0o755)
    handler.write_environment()
    script = base64.b64encode(gzip.compress(b"echo from-a-script\n")).decode()
    handler.write_settings(1, {"script": script}, "", "")
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python3").symlink_to(OLDEST_PYTHONS[-1])
    environment = {"PATH": f"{shims}:/usr/bin:/bin", **handler.environment(1, "cse")}
    for verb in ("install", "enable"):
        done = subprocess.run(
            [str(handler.folder / "bin" / "custom-script"), verb],
            cwd=handler.folder, env=environment, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (verb, done.stderr)
    wait_for(lambda: handler.read_status(1)[0] == "success", 20, "the command to end")
    assert "from-a-script" in handler.read_status(1)[2]
