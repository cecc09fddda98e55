"""``azcmagent extension list|remove`` (docs/agent-cli.md): the installed extensions, text and
JSON; removal runs the handler's disable and uninstall and deletes it; refused while the
extension service holds the state, or for a name that is not installed."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

from machine_helpers import Machine

from arc_agent.extd.handler import Handler
from arc_agent.extd.plan import Installed
from arc_agent.extd.records import Records, exclusive

SCRIPT = """#!/bin/sh
echo "$1 $ConfigSequenceNumber" >> "$(dirname "$0")/../../calls-$ConfigExtensionName"
"""


def install(machine: Machine, name: str, type_: str) -> Handler:
    """A handler unpacked and recorded as extd leaves one it has enabled."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        commands = {
            f"{verb}Command": f"bin/h.sh {verb}" for verb in ("install", "enable", "disable", "uninstall")
        }
        archive.writestr("HandlerManifest.json", json.dumps([{"handlerManifest": commands}]))
        info = zipfile.ZipInfo("bin/h.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(info, SCRIPT)
    paths = machine.paths
    handler = Handler("Contoso", type_, "1.0.0", lib_dir=paths.waagent_dir, log_root=paths.extension_logs_dir)
    handler.unpack(data.getvalue())
    Records(paths.extension_state_dir / "records").save(
        Installed(name=name, publisher="Contoso", type=type_, version="1.0.0", sequence=3, status="success",
                  reported=True, handler_state="Enabled", last_message="ok")
    )  # fmt: skip
    return handler


def test_list_shows_what_is_installed_in_text_and_json(tmp_path: Path) -> None:
    machine = Machine(tmp_path / "root")
    empty = machine.cli("extension", "list")
    assert empty.returncode == 0 and "No extensions are installed" in empty.stdout
    install(machine, "first", "One")
    install(machine, "second", "Two")
    text = machine.cli("extension", "list").stdout.splitlines()
    assert text[0].split() == ["NAME", "TYPE", "VERSION", "STATE", "STATUS"]
    assert text[1].split() == ["first", "Contoso.One", "1.0.0", "Enabled", "success"]
    listed = json.loads(machine.cli("extension", "list", "--json").stdout)["extensions"]
    assert [(e["name"], e["type"], e["state"]) for e in listed] == [
        ("first", "One", "Enabled"),
        ("second", "Two", "Enabled"),
    ]


def test_remove_runs_disable_and_uninstall_and_deletes_the_handler(tmp_path: Path) -> None:
    machine = Machine(tmp_path / "root")
    first = install(machine, "first", "One")
    second = install(machine, "second", "Two")
    removed = machine.cli("extension", "remove", "--name", "FIRST", "--json")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert json.loads(removed.stdout) == {"removed": ["first"]}
    assert (machine.paths.waagent_dir / "calls-first").read_text() == "disable 3\nuninstall 3\n"
    assert not first.folder.exists() and second.folder.exists()
    names = [e["name"] for e in json.loads(machine.cli("extension", "list", "-j").stdout)["extensions"]]
    assert names == ["second"]
    everything = machine.cli("extension", "remove", "-a")
    assert everything.returncode == 0 and "Extension second removed" in everything.stdout
    assert "extensions.blocklist" in everything.stdout  # how to keep it off
    assert not second.folder.exists()


def test_remove_is_refused_while_extd_runs_or_for_an_unknown_name(tmp_path: Path) -> None:
    machine = Machine(tmp_path / "root")
    handler = install(machine, "first", "One")
    with exclusive(machine.paths.extension_state_dir):  # as extd holds it while it runs
        busy = machine.cli("extension", "remove", "--all")
    assert busy.returncode == 72
    assert "systemctl stop extd.path extd" in busy.stderr
    assert handler.folder.exists()
    unknown = machine.cli("extension", "remove", "-n", "nothing")
    assert unknown.returncode == 23 and "installed: first" in unknown.stderr
    neither = machine.cli("extension", "remove")
    assert neither.returncode == 23 and "--name" in neither.stderr
