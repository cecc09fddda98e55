"""``--config FILE``: any flag of the command being run may come from a JSON or YAML file.

The real agent takes a JSON or YAML file of ``flag-name: value`` pairs whose keys are the long
flag names of the command; the command line wins on conflict; it is the recommended way to pass
service principal secrets (docs/reference/azcmagent.md, D:azcmagent.md). Here:

* The command line is parsed twice by the same parsers: once as usual (that is where ``-h`` and
  every usage error happen), once with every option's default hidden, which tells which flags
  were really given. A flag not given is taken from the file, through the flag's own ``type``
  converter and ``choices``, so a value is checked the same way wherever it comes from. A
  command's sub-parser gets its arguments only when first needed (``cli/parser.py``), so the
  chosen command's are added first, by a parse that stops at the command.
* Values: text; numbers (turned into text); ``true``/``false`` for on/off switches (``true``
  gives the switch, ``false`` leaves it off); for flags that take several values, a JSON list.
* Options marked ``required`` may come from the file too; one found in neither place is
  AZCM0016 (missing mandatory parameter).
* A key that is not a flag of the command is AZCM0023 naming it and the command; a missing or
  unreadable file is AZCM0019; content that is not a JSON object or flat YAML is AZCM0023.
  Messages never repeat a value from the file: it may be a secret.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from arc_agent.cli.parser import load_chosen_command
from arc_agent.errors import AzcmError, ErrorCode

MAX_SIZE = 1 << 20
CONFIG_DEST = "config"
_UNSET = object()


# --- reading the file -----------------------------------------------------------------------------


def read_config_file(path: Path) -> dict[str, Any]:
    """The flags a ``--config`` file holds: a JSON object, or flat YAML (``cli/flatyaml.py``)."""
    where = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SIZE + 1)
    except FileNotFoundError:
        raise AzcmError(ErrorCode.BAD_CONFIG_FILE_PATH, f"config file {where!r} does not exist") from None
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise AzcmError(
            ErrorCode.BAD_CONFIG_FILE_PATH, f"cannot read config file {where!r}: {reason}"
        ) from None
    if len(raw) > MAX_SIZE:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"config file {where!r} is larger than {MAX_SIZE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"config file {where!r} is not UTF-8 text") from None
    if text.lstrip("\ufeff \t\r\n").startswith(("{", "[")):
        return _json_document(text.lstrip("\ufeff"), where)
    from arc_agent.cli.flatyaml import FlatYamlError, parse_flat_yaml  # only when a file is given

    try:
        return dict(parse_flat_yaml(text))
    except FlatYamlError as exc:
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"config file {where!r}, {exc}") from None


def _json_document(text: str, where: str) -> dict[str, Any]:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for key, value in pairs:
            if key in document:
                raise ValueError(f"{key!r} is given twice")
            document[key] = value
        return document

    try:
        document = json.loads(text, object_pairs_hook=unique)
    except ValueError as exc:
        raise AzcmError(
            ErrorCode.INVALID_ARGUMENT, f"config file {where!r} is not valid JSON ({exc})"
        ) from None
    if not isinstance(document, dict):
        raise AzcmError(ErrorCode.INVALID_ARGUMENT, f"config file {where!r} must hold a JSON object")
    return document


# --- parsing the command line with the file behind it ---------------------------------------------


def parse_command_line(root: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` with ``root``, then take the flags not given from the ``--config`` file."""
    load_chosen_command(root, argv)  # a command's arguments are added when first needed
    actions = {id(action): action for parser in _all_parsers(root) for action in _options(parser)}
    required = [action for action in actions.values() if action.required]
    for action in required:
        action.required = False
    try:
        namespace = root.parse_args(argv)
        given = _given_dests(root, argv, list(actions.values()))
    finally:
        for action in required:
            action.required = True
    chain = _chosen_parsers(root, namespace)
    command = " ".join(name for name, _ in chain[1:]) or "azcmagent"
    leaf = chain[-1][1]
    from_file: set[str] = set()
    config_value = getattr(namespace, CONFIG_DEST, None)
    if config_value:
        source = str(config_value)
        document = read_config_file(Path(source))
        from_file = _apply(leaf, namespace, document, given, source, command)
    _check_exclusive(leaf, given, from_file, str(config_value))
    chosen = {id(action): action for _, parser in chain for action in _options(parser)}
    missing = [
        _flag_name(action)
        for action in chosen.values()
        if action in required and action.dest not in given and action.dest not in from_file
    ]
    if missing:
        raise AzcmError(
            ErrorCode.MISSING_MANDATORY_PARAMETER,
            f"'azcmagent {command}' needs {', '.join(missing)} (on the command line or in a --config file)",
        )
    return namespace


def _all_parsers(root: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    seen: set[int] = set()
    pending = [root]
    while pending:
        parser = pending.pop()
        if id(parser) in seen:
            continue
        seen.add(id(parser))
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


def _given_dests(
    root: argparse.ArgumentParser, argv: Sequence[str], actions: list[argparse.Action]
) -> set[str]:
    """The destinations of the options really on the command line (defaults hidden)."""
    defaults = [(action, action.default) for action in actions]
    for action in actions:
        action.default = argparse.SUPPRESS
    try:
        return set(vars(root.parse_args(argv)))
    finally:
        for action, default in defaults:
            action.default = default


def _chosen_parsers(
    root: argparse.ArgumentParser, namespace: argparse.Namespace
) -> list[tuple[str, argparse.ArgumentParser]]:
    """The parsers the command line went through: ``root``, the command's, its action's..."""
    chain: list[tuple[str, argparse.ArgumentParser]] = [("", root)]
    parser = root
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = (
            getattr(namespace, sub.dest, None) if sub is not None and sub.dest != argparse.SUPPRESS else None
        )
        if sub is None or not isinstance(name, str) or name not in sub.choices:
            return chain
        parser = sub.choices[name]
        chain.append((name, parser))


def _flag_name(action: argparse.Action) -> str:
    longs = [option for option in action.option_strings if option.startswith("--")]
    return (longs or action.option_strings)[0]


def _file_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    keys: dict[str, argparse.Action] = {}
    for action in _options(parser):
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        for option in action.option_strings:
            if option.startswith("--") and option[2:] != CONFIG_DEST:
                keys[option[2:]] = action
    return keys


def _apply(
    leaf: argparse.ArgumentParser,
    namespace: argparse.Namespace,
    document: dict[str, Any],
    given: set[str],
    source: str,
    command: str,
) -> set[str]:
    """Set the file's flags that the command line did not give; return their destinations."""
    keys = _file_keys(leaf)
    taken: set[str] = set()
    for key, value in document.items():
        if key == CONFIG_DEST:
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT, f"config file {source!r}: a config file cannot name another one"
            )
        action = keys.get(key)
        if action is None:
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT,
                f"config file {source!r}: unknown flag {key!r} for 'azcmagent {command}' "
                f"(known: {', '.join(sorted(keys))})",
            )
        if action.dest in given:
            continue  # the command line wins
        result = _file_value(action, key, value, source)
        if result is _UNSET:
            continue
        if action.dest in taken:
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT,
                f"config file {source!r}: {key!r} sets the same option as another key of the file",
            )
        setattr(namespace, action.dest, result)
        taken.add(action.dest)
    return taken


def _check_exclusive(
    leaf: argparse.ArgumentParser, given: set[str], from_file: set[str], source: str
) -> None:
    for group in leaf._mutually_exclusive_groups:
        present = [action for action in group._group_actions if action.dest in given | from_file]
        if len(present) > 1 and any(action.dest in from_file for action in present):
            names = " and ".join(_flag_name(action) for action in present)
            raise AzcmError(
                ErrorCode.INVALID_ARGUMENT,
                f"{names} cannot be used together (one of them comes from config file {source!r}); keep one",
            )


def _file_value(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """The namespace value that ``key: value`` in the file stands for (``_UNSET`` for none)."""
    if isinstance(action, argparse.BooleanOptionalAction):
        switch = _switch(key, value, source)
        if key.startswith("no-") and f"--{key[3:]}" in action.option_strings:
            return False if switch else _UNSET
        return switch
    if isinstance(action, argparse._StoreConstAction):
        return action.const if _switch(key, value, source) else _UNSET
    if isinstance(action, argparse._AppendConstAction):
        return [action.const] if _switch(key, value, source) else _UNSET
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool):
            return 1 if value else _UNSET
        if isinstance(value, int) and value >= 0:
            return value or _UNSET
        raise _bad(source, f"{key!r} must be true, false or a count")
    if isinstance(action, argparse._StoreAction) and action.nargs in (None, argparse.OPTIONAL):
        return _convert(action, _text(key, value, source), key, source)
    if isinstance(action, argparse._StoreAction) and (
        action.nargs in (argparse.ZERO_OR_MORE, argparse.ONE_OR_MORE) or isinstance(action.nargs, int)
    ):
        items = [_convert(action, _text(key, item, source), key, source) for item in _as_list(value)]
        count_ok = (
            len(items) == action.nargs
            if isinstance(action.nargs, int)
            else (len(items) >= 1 or action.nargs == argparse.ZERO_OR_MORE)
        )
        if not count_ok:
            raise _bad(source, f"{key!r} has the wrong number of values")
        return items
    if isinstance(action, argparse._AppendAction) and action.nargs is None:
        return [_convert(action, _text(key, item, source), key, source) for item in _as_list(value)]
    raise _bad(source, f"{key!r} cannot be set from a config file; give it on the command line")


def _switch(key: str, value: Any, source: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(source, f"{key!r} must be true or false")
    return value


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _text(key: str, value: Any, source: str) -> str:
    if isinstance(value, bool):
        raise _bad(source, f"{key!r} takes a value, not true or false (quote it if the text is meant)")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        raise _bad(source, f"{key!r} has no value (null)")
    raise _bad(source, f"{key!r} must be text or a number")


def _convert(action: argparse.Action, text: str, key: str, source: str) -> Any:
    converter = action.type
    if converter is None:
        value: Any = text
    elif not callable(converter):
        raise _bad(source, f"{key!r} cannot be set from a config file; give it on the command line")
    else:
        try:
            value = converter(text)
        except AzcmError as exc:
            raise AzcmError(exc.code, f"config file {source!r}, {key!r}: {exc.message}") from None
        except argparse.ArgumentTypeError as exc:
            raise _bad(source, f"invalid value for {key!r}: {exc}") from None
        except (TypeError, ValueError):
            kind = getattr(converter, "__name__", "")
            raise _bad(source, f"invalid {kind + ' ' if kind else ''}value for {key!r}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(repr(choice) for choice in action.choices)
        raise _bad(source, f"invalid choice for {key!r} (choose from {choices})")
    return value


def _bad(source: str, message: str) -> AzcmError:
    return AzcmError(ErrorCode.INVALID_ARGUMENT, f"config file {source!r}: {message}")
