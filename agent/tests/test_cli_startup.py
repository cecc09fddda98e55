"""Start-up cost of the read commands.

Ansible runs ``azcmagent show -j``, ``config list -j`` and ``version -j`` on every host of a
fleet on every run, so what they import is what a no-op playbook run costs: a command's module
is imported only when that command is used (``cli/commands.py``), and the modules of the read
commands import nothing of ``cryptography``, ``http.client``, ``ssl`` or ``email``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from arc_agent.cli import config_cmd
from arc_agent.cli.commands import TABLE, Command, Deferred, available_commands
from arc_agent.cli.configfile import parse_command_line
from arc_agent.cli.context import Context
from arc_agent.cli.output import CommandResult
from arc_agent.cli.parser import CommandParser, build_parsers
from arc_agent.errors import AzcmError, ErrorCode

HEAVY = ("cryptography", "_cffi_backend", "http.client", "ssl", "_ssl", "email")
OTHER_COMMANDS = ("connect", "disconnect", "check", "logs")

# Runs one command through main() in a fresh interpreter, then reports what it imported.
PROBE = """\
import json, sys
from arc_agent.cli.main import main
code = main(sys.argv[1:])
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def run_fresh(root: Path, *argv: str) -> tuple[int, str, list[str]]:
    """``azcmagent argv`` in a new interpreter: (exit code, stdout, modules loaded)."""
    env = {**os.environ, "AZCMAGENT_ROOT": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    marker = result.stderr.rpartition("\nPROBE ")[2]
    assert marker != result.stderr, result.stderr
    report: dict[str, Any] = json.loads(marker)
    return report["code"], result.stdout, report["modules"]


def heavy_modules(modules: list[str]) -> list[str]:
    return [name for name in modules if any(name == heavy or name.startswith(heavy + ".") for heavy in HEAVY)]


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "-j"],
        ["show", "status", "agentVersion", "--json"],
        ["config", "list", "-j"],
        ["config", "get", "proxy.url", "-j"],
        ["version", "-j"],
        ["--version"],
        ["help"],
        ["help", "show"],
    ],
)
def test_read_commands_import_no_crypto_tls_or_http(tmp_path: Path, argv: list[str]) -> None:
    code, out, modules = run_fresh(tmp_path, *argv)
    assert code == 0, out
    assert out
    assert heavy_modules(modules) == []
    for name in OTHER_COMMANDS:
        assert f"arc_agent.cli.{name}" not in modules
    assert "arc_agent.identity.keys" not in modules


def test_show_loads_the_system_information_only_for_os(tmp_path: Path) -> None:
    code, out, modules = run_fresh(tmp_path, "show", "-j")
    assert code == 0 and "osName" not in json.loads(out)
    assert "arc_agent.metadata.sysinfo" not in modules
    code, out, modules = run_fresh(tmp_path, "show", "--os", "-j")
    assert code == 0 and json.loads(out)["osType"] == "linux"
    assert "arc_agent.metadata.sysinfo" in modules


def test_a_command_is_imported_when_it_is_run(tmp_path: Path) -> None:
    code, out, modules = run_fresh(tmp_path, "config", "--bogus", "-j")
    assert code == 23
    assert json.loads(out)["error"]["message"] == "unrecognized arguments: --bogus"
    assert "arc_agent.cli.config_cmd" in modules and "arc_agent.cli.show" not in modules
    code, out, modules = run_fresh(tmp_path, "check", "--bogus", "-j")
    assert code == 23
    assert "arc_agent.cli.check" in modules


def test_an_unknown_command_imports_no_command(tmp_path: Path) -> None:
    code, out, modules = run_fresh(tmp_path, "frobnicate", "-j")
    assert code == 23
    assert "invalid choice: 'frobnicate'" in json.loads(out)["error"]["message"]
    assert not [
        name for name in (*OTHER_COMMANDS, "show", "config_cmd") if f"arc_agent.cli.{name}" in modules
    ]


def nothing(ctx: Context) -> CommandResult:
    return CommandResult(text="")


# --- the command table ----------------------------------------------------------------------------


def test_the_table_names_real_functions() -> None:
    for command in available_commands():
        assert isinstance(command.handler, Deferred)
        assert callable(command.handler.resolve())
        if command.add_arguments is not None:
            assert isinstance(command.add_arguments, Deferred)
            assert callable(command.add_arguments.resolve())
    assert [name for name, *_ in TABLE] == [command.name for command in available_commands()]


def test_the_table_summary_of_config_is_the_module_s() -> None:
    assert {name: summary for name, summary, *_ in TABLE}["config"] == config_cmd.SUMMARY


def test_sub_parsers_get_their_arguments_when_first_needed() -> None:
    calls: list[str] = []

    def arguments(name: str) -> Any:
        def add(parser: argparse.ArgumentParser) -> None:
            calls.append(name)
            parser.add_argument("--flag")

        return add

    table = [Command(name, f"the {name} command", nothing, arguments(name)) for name in ("a", "b")]
    parsers = build_parsers(table)
    assert all(isinstance(parsers[name], CommandParser) for name in ("a", "b"))
    assert "a command" in parsers[""].format_help() and calls == []
    namespace = parse_command_line(parsers[""], ["-j", "b", "--flag", "x"])
    assert (namespace.command, namespace.flag, calls) == ("b", "x", ["b"])
    assert "--flag" in parsers["a"].format_help()
    assert calls == ["b", "a"]
    parse_command_line(parsers[""], ["a", "--flag", "y"])
    assert calls == ["b", "a"], "arguments are added once"


def test_a_required_flag_of_a_lazy_command_may_come_from_the_config_file(tmp_path: Path) -> None:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-g", "--resource-group", required=True)
        parser.add_argument("--location", default="westeurope")

    table = [Command("connect", "connect", nothing, arguments)]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"resource-group": "rg", "location": "northeurope"}))
    namespace = parse_command_line(build_parsers(table)[""], ["connect", "--config", str(config)])
    assert (namespace.resource_group, namespace.location) == ("rg", "northeurope")
    namespace = parse_command_line(
        build_parsers(table)[""], ["--config", str(config), "connect", "--location", "eastus"]
    )
    assert (namespace.resource_group, namespace.location) == ("rg", "eastus")
    with pytest.raises(AzcmError) as info:
        parse_command_line(build_parsers(table)[""], ["connect"])
    assert info.value.code == ErrorCode.MISSING_MANDATORY_PARAMETER
    assert "--resource-group" in info.value.message
