"""Builds the ``azcmagent`` argument parser from the command table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from arc_agent import __version__
from arc_agent.argparser import AzcmArgumentParser
from arc_agent.cli.commands import Command
from arc_agent.cli.options import common_flags_parser

PROG = "azcmagent"
DESCRIPTION = (
    f"azcmagent {__version__}: manage the Connected Machine agent of this host "
    "(hybridops.arc open implementation)."
)


def build_parsers(commands: Sequence[Command]) -> dict[str, argparse.ArgumentParser]:
    """The top-level parser under ``""`` and one sub-parser per command under its name."""
    common = common_flags_parser()
    root = AzcmArgumentParser(prog=PROG, description=DESCRIPTION, parents=[common], allow_abbrev=False)
    root.add_argument("--version", action="store_true", help="print the agent version and exit")
    sub = root.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {"": root}
    for command in commands:
        parser = sub.add_parser(
            command.name,
            help=command.summary,
            description=command.summary,
            parents=[common],
            allow_abbrev=False,
        )
        if command.add_arguments is not None:
            command.add_arguments(parser)
        parser.set_defaults(handler=command.handler)
        parsers[command.name] = parser
    return parsers
