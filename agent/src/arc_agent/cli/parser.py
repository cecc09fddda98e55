"""Builds the ``azcmagent`` argument parser from the command table.

Every command has its sub-parser from the start (so ``azcmagent help`` lists them all and an
unknown command is refused with the list of valid ones), but a sub-parser gets its arguments
only when it is first needed: when the command line selects it, or when its help is formatted.
Adding the arguments is what imports the command's module (``cli/commands.py``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from arc_agent import __version__
from arc_agent.argparser import AzcmArgumentParser
from arc_agent.cli.commands import AddArguments, Command
from arc_agent.cli.options import common_flags_parser
from arc_agent.errors import AzcmError

PROG = "azcmagent"
DESCRIPTION = (
    f"azcmagent {__version__}: manage the Connected Machine agent of this host "
    "(hybridops.arc open implementation)."
)


class CommandParser(AzcmArgumentParser):
    """A command's sub-parser, whose arguments are added the first time they are needed."""

    def __init__(self, *args: Any, add_arguments: AddArguments | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_arguments = add_arguments

    def load_arguments(self) -> None:
        """Add the command's arguments now (once; a no-op afterwards)."""
        add_arguments, self._pending_arguments = self._pending_arguments, None
        if add_arguments is not None:
            add_arguments(self)

    def format_usage(self) -> str:
        self.load_arguments()
        return super().format_usage()

    def format_help(self) -> str:
        self.load_arguments()
        return super().format_help()


class _Routed(Exception):
    """Raised by a routing parse once the command is known (see :func:`load_chosen_command`)."""


if TYPE_CHECKING:  # pragma: no cover
    _CommandsBase = argparse._SubParsersAction[CommandParser]
else:
    _CommandsBase = argparse._SubParsersAction


class CommandsAction(_CommandsBase):
    """The ``COMMAND`` positional: loads the chosen command's arguments before parsing them."""

    routing = False
    """When true, stop the parse (raise ``_Routed``) as soon as the command is known."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if isinstance(values, Sequence) and not isinstance(values, str) and values:
            chosen = self.choices.get(values[0])
            if isinstance(chosen, CommandParser):
                chosen.load_arguments()
        if self.routing:
            raise _Routed
        super().__call__(parser, namespace, values, option_string)


def load_chosen_command(root: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Give the command that ``argv`` selects its arguments before anything inspects the parsers.

    ``configfile.parse_command_line`` looks at the chosen command's options before parsing (to
    relax ``required``, to hide defaults), so it calls this first. The command is found by
    ``root`` itself, in a parse that stops once the command is reached: exactly the command the
    real parse will choose. Errors are left to the real parse, which meets them first.
    """
    commands = [action for action in root._actions if isinstance(action, CommandsAction)]
    if not commands:
        return
    for action in commands:
        action.routing = True
    try:
        root.parse_known_args(list(argv))
    except (_Routed, AzcmError):
        pass
    finally:
        for action in commands:
            action.routing = False


def build_parsers(commands: Sequence[Command]) -> dict[str, argparse.ArgumentParser]:
    """The top-level parser under ``""`` and one sub-parser per command under its name."""
    common = common_flags_parser()
    root = AzcmArgumentParser(prog=PROG, description=DESCRIPTION, parents=[common], allow_abbrev=False)
    root.add_argument(
        "--version", dest="show_version", action="store_true", help="print the agent version and exit"
    )
    sub = root.add_subparsers(
        dest="command",
        title="commands",
        metavar="COMMAND",
        parser_class=CommandParser,
        action=CommandsAction,
    )
    parsers: dict[str, argparse.ArgumentParser] = {"": root}
    for command in commands:
        parser = sub.add_parser(
            command.name,
            help=command.summary,
            description=command.summary,
            parents=[cast(CommandParser, common)],  # (typeshed wants parents of the sub-parsers' class)
            allow_abbrev=False,
            add_arguments=command.add_arguments,
        )
        parser.set_defaults(handler=command.handler)
        parsers[command.name] = parser
    return parsers
