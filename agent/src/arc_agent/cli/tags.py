"""The ``--tags`` syntax of ``azcmagent connect`` (docs/reference/azcmagent.md): ``k=v,k2=v2``.

Names and values with spaces may be quoted with ``'`` (``'Cost Center'='IT Ops'``); inside
quotes a comma or ``=`` is plain text. Escapes, quoted or not: ``\\,`` a comma, ``\\\\`` a
backslash, ``\\'`` a quote; any other backslash is refused (write ``\\\\``). Unquoted names and
values lose their surrounding white space. The real agent documents only ``k=v`` pairs and
quoting; the escapes are ours. Tags follow the ARM rules: at most 50, names of at most 512
characters without any of ``<>%&\\?/``, values of at most 256, names unique regardless of case.
"""

from __future__ import annotations

from collections.abc import Mapping

from arc_agent.errors import AzcmError, ErrorCode

MAX_TAGS = 50
MAX_NAME = 512
MAX_VALUE = 256
FORBIDDEN_IN_NAME = "<>%&\\?/"
_ESCAPABLE = ",\\'"
_QUOTE = "'"


def _error(message: str) -> AzcmError:
    return AzcmError(ErrorCode.INVALID_ARGUMENT, f"--tags: {message}")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos]

    def skip_spaces(self) -> None:
        while not self.at_end() and self.peek().isspace():
            self.pos += 1

    def escape(self) -> str:
        """The character after a backslash at ``pos`` (consumed)."""
        following = self.text[self.pos + 1] if self.pos + 1 < len(self.text) else ""
        if following == "" or following not in _ESCAPABLE:
            shown = "\\" + following
            raise _error(
                f"unknown escape {shown!r} at character {self.pos + 1}; "
                "write \\, for a comma, \\\\ for a backslash, \\' for a quote"
            )
        self.pos += 2
        return following

    def read_part(self, stops: str, what: str) -> str:
        """A quoted or unquoted name or value, up to one of ``stops`` (not consumed)."""
        self.skip_spaces()
        if not self.at_end() and self.peek() == _QUOTE:
            return self._quoted(what)
        chars: list[str] = []
        while not self.at_end() and self.peek() not in stops:
            char = self.peek()
            if char == "\\":
                chars.append(self.escape())
            elif char == _QUOTE:
                raise _error(
                    f"a quote inside the unquoted {what} at character {self.pos + 1}; "
                    f"quote the whole {what} ('...') or write \\'"
                )
            else:
                chars.append(char)
                self.pos += 1
        return "".join(chars).strip()

    def _quoted(self, what: str) -> str:
        opening = self.pos
        self.pos += 1
        chars: list[str] = []
        while True:
            if self.at_end():
                raise _error(f"the quoted {what} starting at character {opening + 1} has no closing quote")
            char = self.peek()
            if char == "\\":
                chars.append(self.escape())
            elif char == _QUOTE:
                self.pos += 1
                break
            else:
                chars.append(char)
                self.pos += 1
        self.skip_spaces()
        return "".join(chars)


def parse_tags(text: str | None) -> dict[str, str]:
    """``k=v,'k 2'='v 2'`` -> ``{"k": "v", "k 2": "v 2"}``; empty text -> ``{}``.

    Mistakes are AZCM0023 naming the offending tag.
    """
    if text is None or text.strip() == "":
        return {}
    scanner = _Scanner(text)
    tags: dict[str, str] = {}
    number = 0
    while True:
        number += 1
        start = scanner.pos
        name = scanner.read_part("=,", "name")
        if scanner.at_end() or scanner.peek() != "=":
            piece = text[start : scanner.pos].strip()
            if scanner.at_end() or scanner.peek() == ",":
                raise _error(
                    f"tag {number} ({piece!r}) has no '='; write NAME=VALUE (NAME= for an empty value)"
                )
            raise _error(
                f"tag {number}: unexpected {scanner.peek()!r} after the quoted name {name!r}; expected '='"
            )
        scanner.pos += 1
        value = scanner.read_part(",", "value")
        if not scanner.at_end() and scanner.peek() != ",":
            raise _error(
                f"tag {number} ({name!r}): unexpected {scanner.peek()!r} after the quoted value; "
                "expected ',' between tags"
            )
        _add(tags, name, value, number)
        if scanner.at_end():
            return tags
        scanner.pos += 1
        if text[scanner.pos :].strip() == "":
            raise _error(f"nothing after the comma that ends tag {number}; remove the trailing comma")


def _add(tags: dict[str, str], name: str, value: str, number: int) -> None:
    _check(name, value, f"tag {number}")
    for existing in tags:
        if existing.lower() == name.lower():
            raise _error(f"tag name {name!r} appears twice (tag names are case-insensitive)")
    if len(tags) >= MAX_TAGS:
        raise _error(f"more than {MAX_TAGS} tags; Azure allows at most {MAX_TAGS} per resource")
    tags[name] = value


def _check(name: str, value: str, where: str) -> None:
    if name.strip() == "":
        raise _error(f"{where} has an empty name")
    if len(name) > MAX_NAME:
        raise _error(f"{where}: the name {name[:40]!r}... is longer than {MAX_NAME} characters")
    bad = sorted({char for char in name if char in FORBIDDEN_IN_NAME})
    if bad:
        raise _error(
            f"{where}: the name {name!r} contains {' '.join(bad)}; tag names may not contain any of "
            f"{' '.join(FORBIDDEN_IN_NAME)}"
        )
    if len(value) > MAX_VALUE:
        raise _error(f"{where} ({name!r}): the value is longer than {MAX_VALUE} characters")


def check_tags(tags: Mapping[str, str]) -> None:
    """The ARM rules on a ready-made mapping (AZCM0023 on the first broken one)."""
    checked: dict[str, str] = {}
    for number, (name, value) in enumerate(tags.items(), start=1):
        _add(checked, name, value, number)


def _quote_if_needed(part: str) -> str:
    plain = part == part.strip() and not any(char.isspace() or char in ",='\\" for char in part)
    if plain:
        return part
    return _QUOTE + part.replace("\\", "\\\\").replace(_QUOTE, "\\'") + _QUOTE


def format_tags(tags: Mapping[str, str]) -> str:
    """The ``--tags`` text of ``tags``, such that ``parse_tags(format_tags(t)) == t``."""
    check_tags(tags)
    return ",".join(f"{_quote_if_needed(name)}={_quote_if_needed(value)}" for name, value in tags.items())
