"""The ``$filter`` of ARM's generic resource lists (Resources_List), parsed into a predicate.

What Azure documents for ``GET /subscriptions/{id}/resources`` and what its clients send
(``az resource list`` joins its options with ``and``; docs/reference/arm.md, "Generic
resources"):

- ``resourceType eq 'Microsoft.HybridCompute/machines'``, ``name eq 'web-1'``,
  ``location eq 'westeurope'``, ``resourceGroup eq 'rg'`` (all without case);
- ``tagName eq 'env'``, and with it ``tagValue eq 'prod'`` (the tag ``env`` has the value
  ``prod``; tag names without case, values with it), ``startswith(tagName, 'en')``;
- ``substringof('web', name)``, ``startswith(name, 'web')``;
- ``and``, ``or`` and parentheses; keywords and field names in any case.

Anything else is ARM's 400 ``InvalidFilterInQueryString``, naming what was not understood.
Pure: no I/O, no database; :mod:`.resources` evaluates the predicate on each candidate, after
narrowing its read by :func:`required_equalities` (what every match must equal).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from arc_controlplane.errors import ArmError

MAX_FILTER_LENGTH = 2048


@dataclass(frozen=True)
class Candidate:
    """What a filter can see of a resource."""

    type: str
    name: str
    location: str
    resource_group: str
    tags: Mapping[str, Any]


Predicate = Callable[[Candidate], bool]

_TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<word>[A-Za-z][A-Za-z0-9_/.]*)|(?P<punct>[(),]))")
_FIELDS = {
    "resourcetype": "type",
    "name": "name",
    "location": "location",
    "resourcegroup": "resource_group",
}


def _invalid(text: str, reason: str) -> ArmError:
    shown = text if len(text) <= 256 else text[:256] + "..."
    return ArmError(
        400,
        "InvalidFilterInQueryString",
        f"Invalid $filter '{shown}' specified in the query string: {reason}. Filters take "
        "resourceType, name, location, resourceGroup, tagName and tagValue with 'eq', "
        "startswith(name|tagName, '...'), substringof('...', name), joined by 'and' or 'or'.",
    )


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise _invalid(text, f"unexpected text at position {position + 1}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1].replace("''", "'")
        found.append((kind, value))
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.index != len(self.tokens):
            raise _invalid(self.text, f"unexpected '{self.tokens[self.index][1]}'")
        return predicate

    def _peek_word(self) -> str | None:
        if self.index < len(self.tokens) and self.tokens[self.index][0] == "word":
            return self.tokens[self.index][1].lower()
        return None

    def _take(self, kind: str, value: str | None = None) -> str:
        if self.index >= len(self.tokens):
            raise _invalid(self.text, "it ends too early")
        got_kind, got = self.tokens[self.index]
        if got_kind != kind or (value is not None and got.lower() != value):
            expected = value or {"string": "a quoted string", "word": "a name"}.get(kind, kind)
            raise _invalid(self.text, f"expected {expected}, found '{got}'")
        self.index += 1
        return got

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek_word() == "or":
            self.index += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda c: any(p(c) for p in parts))

    def _and(self) -> Predicate:
        comparisons: list[tuple[str, str]] = []  # ("tagname"|"tagvalue", value), combined below
        parts: list[Predicate] = []
        while True:
            self._atom(parts, comparisons)
            if self._peek_word() != "and":
                break
            self.index += 1
        parts.extend(self._tags(comparisons))
        return parts[0] if len(parts) == 1 else (lambda c: all(p(c) for p in parts))

    def _tags(self, comparisons: list[tuple[str, str]]) -> list[Predicate]:
        names = [value for field, value in comparisons if field == "tagname"]
        values = [value for field, value in comparisons if field == "tagvalue"]
        if values and len(names) != 1:
            raise _invalid(self.text, "tagValue needs exactly one tagName in the same 'and'")
        if len(values) > 1:
            raise _invalid(self.text, "tagValue can be given once")
        if not names:
            return []
        wanted_value = values[0] if values else None

        def has_tag(candidate: Candidate, name: str = names[-1]) -> bool:
            for key, value in candidate.tags.items():
                if key.lower() == name.lower() and (wanted_value is None or value == wanted_value):
                    return True
            return False

        return [has_tag] + [_has_tag_named(name) for name in names[:-1]]

    def _atom(self, parts: list[Predicate], comparisons: list[tuple[str, str]]) -> None:
        if self.index < len(self.tokens) and self.tokens[self.index] == ("punct", "("):
            self.index += 1
            parts.append(self._or())
            self._take("punct", ")")
            return
        word = self._take("word").lower()
        if word in ("startswith", "substringof"):
            parts.append(self._function(word))
            return
        self._take("word", "eq")
        value = self._take("string")
        if word in ("tagname", "tagvalue"):
            comparisons.append((word, value))
        elif word in _FIELDS:
            parts.append(_equals(_FIELDS[word], value))
        else:
            raise _invalid(self.text, f"'{word}' is not a field resources can be filtered on")

    def _function(self, name: str) -> Predicate:
        self._take("punct", "(")
        if name == "startswith":
            field = self._take("word").lower()
            self._take("punct", ",")
            prefix = self._take("string").lower()
            self._take("punct", ")")
            if field == "tagname":
                return lambda c: any(key.lower().startswith(prefix) for key in c.tags)
            if field == "name":
                return lambda c: c.name.lower().startswith(prefix)
            raise _invalid(self.text, "startswith takes name or tagName")
        part = self._take("string").lower()
        self._take("punct", ",")
        field = self._take("word").lower()
        self._take("punct", ")")
        if field != "name":
            raise _invalid(self.text, "substringof takes name")
        return lambda c: part in c.name.lower()


def _equals(attribute: str, value: str) -> Predicate:
    wanted = value.lower()
    if attribute == "location":
        wanted = wanted.replace(" ", "")
    return lambda c: str(getattr(c, attribute)).lower().replace(" ", "") == wanted.replace(" ", "")


def _has_tag_named(name: str) -> Predicate:
    return lambda c: any(key.lower() == name.lower() for key in c.tags)


def parse_filter(text: str | None) -> Predicate:
    """The predicate of a ``$filter``; everything passes when there is none (``az resource list``
    without options sends an empty one)."""
    if text is None or not text.strip():
        return lambda _: True
    if len(text) > MAX_FILTER_LENGTH:
        raise _invalid(text, f"it is longer than {MAX_FILTER_LENGTH} characters")
    return _Parser(text).parse()


def required_equalities(text: str | None) -> list[tuple[str, str]]:
    """The ``(attribute, value)`` of the ``name``, ``resourceGroup`` and ``resourceType``
    comparisons every match must satisfy: those of a filter that is one conjunction (no ``or``,
    no parentheses), which a reader can push down to its query. Call after :func:`parse_filter`."""
    if text is None or not text.strip():
        return []
    tokens = _tokens(text)
    if any(token == ("punct", "(") or (token[0] == "word" and token[1].lower() == "or") for token in tokens):
        return []
    found = []
    for index in range(len(tokens) - 2):
        (kind, word), (_, operator), (value_kind, value) = tokens[index : index + 3]
        field = _FIELDS.get(word.lower()) if kind == "word" else None
        if (
            field in ("name", "resource_group", "type")
            and operator.lower() == "eq"
            and value_kind == "string"
        ):
            found.append((field, value))
    return found
