"""The common flags of every command (reference §1.2) and the ``--config`` file that may set them.

Each common flag is declared with ``default=SUPPRESS`` on the top-level parser and on every
sub-parser, so it may stand before or after the command and an absent flag leaves no attribute:
that is how a value given on the command line is told apart from one to take from the file
(the command line wins on conflict, D:azcmagent.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from arc_agent.argparser import AzcmArgumentParser
from arc_agent.errors import AzcmError, ErrorCode

# Long flag name (as written in a config file) -> argparse dest, for the on/off common flags.
SWITCHES: Mapping[str, str] = {
    "json": "json",
    "log-stderr": "log_stderr",
    "no-color": "no_color",
    "verbose": "verbose",
}


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
        help='JSON file of flag-name: value pairs, e.g. {"verbose": true}; the command line wins',
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
        if token == "--":
            return False
        if token == long_flag:
            return True
        if token.startswith("-") and not token.startswith("--") and short_letter in token[1:]:
            letters = set(token[1:])
            if letters <= {"h", "j", "v"}:
                return True
    return False


def resolve(namespace: argparse.Namespace) -> CommonOptions:
    """Merge the flags given on the command line with those of ``--config`` (if any)."""
    given = vars(namespace)
    config_value = given.get("config")
    config_path = Path(config_value) if config_value else None
    from_file = load_config_file(config_path) if config_path is not None else {}

    def pick(dest: str) -> bool:
        if dest in given:
            return bool(given[dest])
        return from_file.get(dest, False)

    return CommonOptions(
        config=config_path,
        json=pick("json"),
        log_stderr=pick("log_stderr"),
        no_color=pick("no_color"),
        verbose=pick("verbose"),
    )


def load_config_file(path: Path) -> dict[str, bool]:
    """Read a ``--config`` file: a JSON object of flag names (as on the command line) to values."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AzcmError(ErrorCode.BAD_CONFIG_FILE_PATH, f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise AzcmError(
            ErrorCode.BAD_CONFIG_FILE_PATH, f"cannot read config file {str(path)!r}: {reason}"
        ) from None
    except UnicodeDecodeError:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"config file {str(path)!r} is not UTF-8 text") from None
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT,
            f"config file {str(path)!r} is not valid JSON ({exc}); only JSON is supported so far",
        ) from None
    if not isinstance(document, dict):
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"config file {str(path)!r} must hold a JSON object")
    values: dict[str, bool] = {}
    for key, value in document.items():
        dest = SWITCHES.get(key)
        if dest is None:
            known = ", ".join(sorted(SWITCHES))
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT,
                f"config file {str(path)!r}: unknown flag {key!r} (known: {known})",
            )
        if not isinstance(value, bool):
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT, f"config file {str(path)!r}: {key!r} must be true or false"
            )
        values[dest] = value
    return values
