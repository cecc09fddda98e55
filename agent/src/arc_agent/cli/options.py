"""The common flags of every command (docs/reference/azcmagent.md).

Each common flag is declared with ``default=SUPPRESS`` on the top-level parser and on every
sub-parser, so it may stand before or after the command and an absent flag leaves no attribute.
The ``--config`` file behind them (and behind every other flag) is read by ``configfile.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from arc_agent.argparser import AzcmArgumentParser


@dataclass(frozen=True)
class CommonOptions:
    """The resolved common flags of one invocation."""

    config: Path | None = None
    json: bool = False
    log_stderr: bool = False
    no_color: bool = False
    verbose: bool = False


def common_flags_parser() -> AzcmArgumentParser:
    """A parent parser holding the common flags (add it with ``parents=[...]``)."""
    parent = AzcmArgumentParser(add_help=False)
    group = parent.add_argument_group("common flags")
    sup = argparse.SUPPRESS
    group.add_argument(
        "--config",
        metavar="FILE",
        default=sup,
        help='JSON or YAML file of flag-name: value pairs, e.g. {"verbose": true}; the command line wins',
    )
    group.add_argument("-j", "--json", action="store_true", default=sup, help="output JSON")
    group.add_argument("--log-stderr", action="store_true", default=sup, help="write log records to stderr")
    group.add_argument("--no-color", action="store_true", default=sup, help="disable colored output")
    group.add_argument("-v", "--verbose", action="store_true", default=sup, help="verbose output")
    return parent


def flag_present(argv: Sequence[str], long_flag: str, short_letter: str) -> bool:
    """Whether a switch appears in raw ``argv`` (used before parsing, to format parse errors).

    Short switches may be bundled (``-vj``); scanning stops at ``--``.
    """
    for token in argv:
        if token == "--":  # noqa: S105 - a command-line token, not a password
            return False
        if token == long_flag:
            return True
        if token.startswith("-") and not token.startswith("--") and short_letter in token[1:]:
            letters = set(token[1:])
            if letters <= {"h", "j", "v"}:
                return True
    return False


def resolve(namespace: argparse.Namespace) -> CommonOptions:
    """The common flags of a namespace already merged with its ``--config`` file (``configfile.py``)."""
    given = vars(namespace)
    config_value = given.get("config")

    def pick(dest: str) -> bool:
        return bool(given.get(dest, False))

    return CommonOptions(
        config=Path(config_value) if config_value else None,
        json=pick("json"),
        log_stderr=pick("log_stderr"),
        no_color=pick("no_color"),
        verbose=pick("verbose"),
    )
