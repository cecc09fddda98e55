"""The command table: each command's name, help line, arguments and handler.

The table is data: a command's name and summary, and the module and attribute names of its
handler and of the function adding its arguments. A command's module is imported only when the
command is used (parsed, run, or described by ``help COMMAND``), so the read commands that Ansible
runs on every host (``show``, ``config list``, ``version``) do not pay for importing ``connect``
or ``check`` (``http.client``, ``ssl``, ``cryptography``...).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from arc_agent.cli.context import Context
    from arc_agent.cli.output import CommandResult

Handler = Callable[["Context"], "CommandResult"]
AddArguments = Callable[[argparse.ArgumentParser], None]

PACKAGE = "arc_agent.cli"


@dataclass(frozen=True)
class Command:
    """One command; ``handler`` and ``add_arguments`` are :class:`Deferred` in the real table."""

    name: str
    summary: str
    handler: Handler
    add_arguments: AddArguments | None = None


class Deferred:
    """``arc_agent.cli.<module>.<attribute>``, imported on first use.

    A plain class, not a dataclass: building dataclasses costs start-up time.
    """

    __slots__ = ("attribute", "module")

    def __init__(self, module: str, attribute: str) -> None:
        self.module = module
        self.attribute = attribute

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.module!r}, {self.attribute!r})"

    def resolve(self) -> Any:
        return getattr(importlib.import_module(f"{PACKAGE}.{self.module}"), self.attribute)


class DeferredHandler(Deferred):
    __slots__ = ()

    def __call__(self, ctx: Context) -> CommandResult:
        handler: Handler = self.resolve()
        return handler(ctx)


class DeferredArguments(Deferred):
    __slots__ = ()

    def __call__(self, parser: argparse.ArgumentParser) -> None:
        add_arguments: AddArguments = self.resolve()
        add_arguments(parser)


# (name, summary, "module.handler", the module's function adding the arguments or None), in help
# order. A summary is data here so that ``azcmagent help`` imports no command (config's is also
# ``config_cmd.SUMMARY``; tests/test_cli_startup.py keeps the two equal).
TABLE: tuple[tuple[str, str, str, str | None], ...] = (
    ("version", "Print the agent version", "about.version", None),
    ("license", "Print the license notice", "about.license_notice", None),
    ("help", "Help about any command", "about.help_text", "help_arguments"),
    ("connect", "Connect this machine to the control plane", "connect.connect", "add_arguments"),
    ("disconnect", "Delete this machine's resource and reset it", "disconnect.disconnect", "add_arguments"),
    ("show", "Show the agent's state", "show.show", "add_arguments"),
    ("config", "Change configuration settings for this machine", "config_cmd.run", "add_arguments"),
    ("check", "Check that the control plane endpoints are reachable", "check.check", "add_arguments"),
    ("logs", "Collect the agent's logs into a ZIP archive", "logs.logs", "add_arguments"),
    ("extension", "Manage the extensions installed on this machine", "extension_cmd.run", "add_arguments"),
    (
        "upgrade",
        "Upgrade the agent to another version, checked, rolled back on failure",
        "upgrade.upgrade",
        "add_arguments",
    ),
)


def available_commands() -> tuple[Command, ...]:
    """The commands this implementation has built so far.

    The real agent's ``genkey`` (docs/reference/azcmagent.md) is added here when it is written;
    until then it is an unknown command (AZCM0023).
    """
    commands = []
    for name, summary, target, arguments in TABLE:
        module, _, handler = target.partition(".")
        add_arguments = None if arguments is None else DeferredArguments(module, arguments)
        commands.append(Command(name, summary, DeferredHandler(module, handler), add_arguments))
    return tuple(commands)
