"""Commands that describe the program itself: ``version``, ``license``, ``help``."""

from __future__ import annotations

import argparse

from arc_agent import __version__
from arc_agent.cli.context import Context
from arc_agent.cli.output import CommandResult
from arc_agent.errors import AzcmError, ErrorCode

LICENSE_NOTICE = (
    f"azcmagent {__version__} from hybridops.arc, an open implementation of the Azure Connected "
    "Machine agent.\n"
    "Licensed under the GNU General Public License v3.0 or later (SPDX-License-Identifier: "
    'GPL-3.0-or-later). Provided "as is", without warranty of any kind.\n'
    "This is not Microsoft software; the Microsoft agent's license terms do not apply to it.\n"
)


def version(ctx: Context) -> CommandResult:
    return CommandResult(text=f"azcmagent version {__version__}", data={"version": __version__})


def license_notice(ctx: Context) -> CommandResult:
    return CommandResult(text=LICENSE_NOTICE, data={"license": "GPL-3.0-or-later", "notice": LICENSE_NOTICE})


def help_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", nargs="?", metavar="COMMAND", help="the command to describe")


def help_text(ctx: Context) -> CommandResult:
    topic: str | None = getattr(ctx.args, "topic", None)
    name = topic or ""
    parser = ctx.parsers.get(name)
    if parser is None:
        valid = ", ".join(sorted(n for n in ctx.parsers if n))
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"unknown command {topic!r} (valid commands: {valid})")
    text = parser.format_help()
    return CommandResult(text=text, data={"help": text})
