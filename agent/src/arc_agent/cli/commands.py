"""The command table: each command's name, help line, arguments and handler."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from arc_agent.cli import about, check, config_cmd, connect, disconnect, logs, show
from arc_agent.cli.context import Context
from arc_agent.cli.output import CommandResult

Handler = Callable[[Context], CommandResult]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    handler: Handler
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


def _help_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", nargs="?", metavar="COMMAND", help="the command to describe")


def available_commands() -> tuple[Command, ...]:
    """The commands this implementation has built so far.

    The real agent's ``extension``, ``upgrade`` and ``genkey`` (reference §1.1) are added here
    as they are written; until then they are unknown commands (AZCM0023).
    """
    return (
        Command("version", "Print the agent version", about.version),
        Command("license", "Print the license notice", about.license_notice),
        Command("help", "Help about any command", about.help_text, _help_arguments),
        Command(
            "connect", "Connect this machine to the control plane", connect.connect, connect.add_arguments
        ),
        Command(
            "disconnect",
            "Delete this machine's resource and reset it",
            disconnect.disconnect,
            disconnect.add_arguments,
        ),
        Command("show", "Show the agent's state", show.show, show.add_arguments),
        Command("config", config_cmd.SUMMARY, config_cmd.run, config_cmd.add_arguments),
        Command(
            "check", "Check that the control plane endpoints are reachable", check.check, check.add_arguments
        ),
        Command("logs", "Collect the agent's logs into a ZIP archive", logs.logs, logs.add_arguments),
    )
