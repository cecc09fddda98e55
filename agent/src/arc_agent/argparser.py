"""An ``argparse`` parser that reports mistakes as AZCM0023 instead of exiting with 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from arc_agent.errors import AzcmError, ErrorCode


class AzcmArgumentParser(argparse.ArgumentParser):
    """Raise :class:`AzcmError` (invalid argument value) on any usage error.

    The caller renders the error once, as text or JSON, and exits with its code; argparse's own
    "print usage, exit 2" would break the agent's exit-code contract (docs/reference/azcmagent.md).
    Sub-parsers created from it inherit the behaviour.
    """

    def error(self, message: str) -> NoReturn:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, message)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse, except that an option that takes a value takes the next argument even when
        it begins with ``-`` (a secret such as ``-Xy3...``), as the real agent's flags do."""
        given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(attach_dashed_values(given, *_option_strings(self)), namespace)


def _option_strings(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """(the options that take one value, every option) of ``parser`` and its sub-parsers."""
    valued: set[str] = set()
    every: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                more_valued, more_every = _option_strings(sub)
                valued |= more_valued
                every |= more_every
            continue
        every.update(action.option_strings)
        if isinstance(action, (argparse._StoreAction, argparse._AppendAction)) and action.nargs is None:
            valued.update(action.option_strings)
    return valued, every


def attach_dashed_values(args: Sequence[str], valued: set[str], every: set[str]) -> list[str]:
    """``--opt -value`` as ``--opt=-value`` (``-o -value`` as ``-o-value``) for the options in
    ``valued``, when ``-value`` is no option of ``every``; argparse would take it for one."""
    out: list[str] = []
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--":
            out.extend(args[index:])
            break
        following = args[index + 1] if index + 1 < len(args) else None
        if (
            word in valued
            and following is not None
            and following.startswith("-")
            and following not in every
            and following != "--"
        ):
            out.append(f"{word}={following}" if word.startswith("--") else word + following)
            index += 2
            continue
        out.append(word)
        index += 1
    return out
