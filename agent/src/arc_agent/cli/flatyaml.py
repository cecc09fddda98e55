"""A strict reader for the flat YAML of ``--config`` files: one ``flag-name: value`` per line.

The agent may not depend on a YAML library, and a ``--config`` file needs very little of YAML:
a mapping of flag names to scalars. Supported: ``key: value`` lines at the start of the line,
plain, ``'single'`` and ``"double"`` quoted scalars (keys too), ``true``/``false`` (any case),
decimal integers, ``#`` comments, blank lines and a leading ``---``. Everything else YAML has
(nesting, lists, flow collections, anchors, tags, block scalars, multi-line values, several
documents) is refused with the line number, as are plain scalars whose meaning differs between
YAML versions (``yes``/``no``/``on``/``off``, ``null``/``~``, ``0755``, ``0x1F``): quote them to
mean text. Other plain scalars, ``1.64`` included, are text taken literally.

Error messages give line numbers, never the line's content: these files carry secrets.
"""

from __future__ import annotations

import re
from typing import Union

Scalar = Union[str, int, bool]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_INTEGER = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_AMBIGUOUS_INTEGER = re.compile(
    r"[-+]?(0[0-9]+|0[xXoObB][0-9A-Fa-f_]*|[0-9][0-9_]*_[0-9_]*|[0-9]+(:[0-5]?[0-9])+)"
)
_YAML11_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}
_NULLS = {"null", "~"}
_INDICATORS = "[]{}&*!|>%@`,"
_SIMPLE_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class FlatYamlError(ValueError):
    """A line the reader does not accept; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


def parse_flat_yaml(text: str) -> dict[str, Scalar]:
    """The mapping a flat YAML document holds (see the module docstring for what is accepted)."""
    result: dict[str, Scalar] = {}
    first_line: dict[str, int] = {}
    seen_content = False
    for number, raw in enumerate(text.lstrip("\ufeff").split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        stripped = line.strip(" \t")
        if stripped == "" or stripped.startswith("#"):
            continue
        if stripped == "---" and not seen_content and line.startswith("---"):
            seen_content = True
            continue
        seen_content = True
        if line[0] in " \t":
            raise FlatYamlError(
                number,
                "indented line: nested values are not supported; write one 'flag-name: value' per line, "
                "starting at the beginning of the line",
            )
        key, rest = _key(line, number)
        value = _value(key, rest, number)
        if key in result:
            raise FlatYamlError(number, f"{key!r} is given twice (first on line {first_line[key]})")
        result[key] = value
        first_line[key] = number
    return result


def _key(line: str, number: int) -> tuple[str, str]:
    """The key of a line and what follows its ``:``."""
    if line[0] in "'\"":
        key, after = _quoted(line, 0, number)
        after = after.lstrip(" \t")
        if not after.startswith(":"):
            raise FlatYamlError(number, "expected ':' after the quoted name")
        rest = after[1:]
    else:
        match = _PLAIN_KEY.match(line)
        after = line[match.end() :].lstrip(" \t") if match else ""
        if match is None or not after.startswith(":"):
            if line.startswith(("---", "...")):
                raise FlatYamlError(number, "several YAML documents are not supported; write only one")
            if line[0] == "-":
                raise FlatYamlError(number, "lists are not supported; write 'flag-name: value' lines")
            if line[0] in "{[":
                raise FlatYamlError(
                    number, "flow mappings are not supported in YAML here; a JSON file must start with '{'"
                )
            raise FlatYamlError(number, "expected 'flag-name: value'")
        key = match.group(0)
        rest = after[1:]
    if rest and rest[0] not in " \t":
        raise FlatYamlError(number, "expected a space after ':'")
    if key == "":
        raise FlatYamlError(number, "empty flag name")
    return key, rest


def _value(key: str, rest: str, number: int) -> Scalar:
    text = rest.strip(" \t")
    if text == "" or text.startswith("#"):
        raise FlatYamlError(
            number, f"{key!r} has no value; give one (use '' for empty text) or remove the line"
        )
    if text[0] in "'\"":
        value, after = _quoted(text, 0, number)
        after = after.strip(" \t")
        if after and not after.startswith("#"):
            raise FlatYamlError(number, f"unexpected text after the quoted value of {key!r}")
        return value
    if text[0] in _INDICATORS or text[:2] in ("- ", "? ", ": ") or text in ("-", "?", ":"):
        raise FlatYamlError(
            number,
            f"the value of {key!r} starts with {text[0]!r}: lists, mappings, anchors, tags and block "
            "scalars are not supported; quote the value if it is text",
        )
    return _plain(key, _strip_comment(text), number)


def _strip_comment(text: str) -> str:
    for index in range(1, len(text)):
        if text[index] == "#" and text[index - 1] in " \t":
            return text[:index].rstrip(" \t")
    return text


def _plain(key: str, text: str, number: int) -> Scalar:
    if ": " in text or text.endswith(":") or ":\t" in text:
        raise FlatYamlError(
            number, f"the value of {key!r} contains ': ' (a nested mapping in YAML); quote the value"
        )
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered in _YAML11_BOOLEANS:
        raise FlatYamlError(
            number,
            f"the value of {key!r} is ambiguous in YAML (a boolean for some readers, text for others); "
            "write true or false, or quote it to mean text",
        )
    if lowered in _NULLS:
        raise FlatYamlError(
            number, f"{key!r} is null; give a value (use '' for empty text) or remove the line"
        )
    if _INTEGER.fullmatch(text):
        return int(text)
    if _AMBIGUOUS_INTEGER.fullmatch(text):
        raise FlatYamlError(
            number,
            f"the number given for {key!r} reads differently in different YAML versions; "
            "write it in plain decimal, or quote it to mean text",
        )
    return text


def _quoted(text: str, start: int, number: int) -> tuple[str, str]:
    """The scalar quoted at ``text[start]`` and the text after its closing quote."""
    quote = text[start]
    chars: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if quote == "'":
            if char == "'":
                if text[index + 1 : index + 2] == "'":
                    chars.append("'")
                    index += 2
                    continue
                return "".join(chars), text[index + 1 :]
            chars.append(char)
            index += 1
            continue
        if char == '"':
            return "".join(chars), text[index + 1 :]
        if char == "\\":
            decoded, index = _escape(text, index, number)
            chars.append(decoded)
            continue
        chars.append(char)
        index += 1
    raise FlatYamlError(
        number, "the quoted value does not end on this line (multi-line values are not supported)"
    )


def _escape(text: str, index: int, number: int) -> tuple[str, int]:
    """Decode the escape at ``text[index]`` (a backslash); return it and the index after it."""
    code = text[index + 1 : index + 2]
    if code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[code], index + 2
    width = _HEX_ESCAPES.get(code)
    if width is not None:
        digits = text[index + 2 : index + 2 + width]
        if len(digits) == width and all(char in "0123456789abcdefABCDEF" for char in digits):
            point = int(digits, 16)
            if point <= 0x10FFFF and not 0xD800 <= point <= 0xDFFF:
                return chr(point), index + 2 + width
        raise FlatYamlError(number, f"bad \\{code} escape in a double-quoted value")
    raise FlatYamlError(
        number,
        "unsupported escape in a double-quoted value; write \\\\ for a backslash, or use single quotes",
    )
