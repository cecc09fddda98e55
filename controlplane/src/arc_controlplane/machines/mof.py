"""The compiled DSC document (``.mof``) of a machine configuration package, read into resources
(docs/machine-configuration.md, "Packages"). The agent reads documents with its own reader (it
evaluates them); tests/repository/test_mof_readers.py keeps the two in agreement.

A package's document is what PowerShell DSC's compiler writes: ``instance of <Class> as $<alias>
{ Property = value; ... };`` blocks, the resources, then one ``OMI_ConfigurationDocument``
instance. Values are strings (``"..."`` with backslash escapes), numbers, ``True``/``False``,
``NULL``, ``$alias`` references and ``{ ... }`` arrays of those; comments are ``/* */`` and ``//``.
Only what the control plane needs is kept: each resource's class, ``ResourceID`` (``[Class]Name``)
and properties, so that a ``configurationParameter`` (``[Class]Name;Property``) can be checked
against the document before it is accepted. :class:`MofError` names the line of what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DOCUMENT_CLASS = "OMI_ConfigurationDocument"
MAX_DOCUMENT_CHARS = 4 * 1024 * 1024

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?(?:0x[0-9A-Fa-f]+|[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?))
  | (?P<alias>\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}=;,\[\]():])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "'": "'", "0": "\0"}
RESOURCE_ID = re.compile(r"^\[(?P<type>[A-Za-z_][A-Za-z0-9_]*)\](?P<name>.+)$", re.DOTALL)


class MofError(ValueError):
    """The document is not one the agent can run; the message names the line and the problem."""


@dataclass(frozen=True)
class Resource:
    class_name: str
    alias: str
    properties: dict[str, Any]

    @property
    def resource_id(self) -> str:
        return str(self.properties.get("ResourceID", ""))


@dataclass(frozen=True)
class Document:
    name: str
    """``ConfigurationName`` (the document instance's ``Name``)."""
    resources: list[Resource] = field(default_factory=list)

    def find(self, resource_id: str) -> Resource | None:
        """The resource whose ``ResourceID`` is ``resource_id`` (compared case-insensitively, as DSC does)."""
        wanted = resource_id.lower()
        return next((r for r in self.resources if r.resource_id.lower() == wanted), None)


@dataclass
class _Token:
    kind: str
    text: str
    line: int


def _tokens(text: str) -> list[_Token]:
    tokens, position, line = [], 0, 1
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise MofError(f"line {line}: unexpected {text[position : position + 20]!r}")
        kind = str(match.lastgroup)
        if kind not in ("space", "comment"):
            tokens.append(_Token(kind, match.group(), line))
        line += match.group().count("\n")
        position = match.end()
    return tokens


def _unquote(literal: str, line: int) -> str:
    out, index, body = [], 0, literal[1:-1]
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1 : index + 2]
            if escaped not in _ESCAPES:
                raise MofError(f"line {line}: unknown escape \\{escaped} in a string")
            out.append(_ESCAPES[escaped])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None, kind: str | None = None) -> _Token:
        token = self.peek()
        if token is None:
            raise MofError(f"the document ends early (expected {expected or kind or 'more'})")
        if (expected is not None and token.text != expected) or (kind is not None and token.kind != kind):
            raise MofError(f"line {token.line}: expected {expected or kind}, found {token.text[:40]!r}")
        self.index += 1
        return token

    def value(self) -> Any:
        token = self.take()
        if token.kind == "string":
            text = _unquote(token.text, token.line)
            while (following := self.peek()) is not None and following.kind == "string":  # "a" "b"
                text += _unquote(self.take().text, following.line)
            return text
        if token.kind == "number":
            return (
                int(token.text, 0)
                if re.fullmatch(r"-?(0x[0-9A-Fa-f]+|[0-9]+)", token.text)
                else float(token.text)
            )
        if token.kind == "alias":
            return token.text
        if token.kind == "word" and token.text.lower() in ("true", "false"):
            return token.text.lower() == "true"
        if token.kind == "word" and token.text.lower() == "null":
            return None
        if token.text == "{":
            items: list[Any] = []
            while (following := self.peek()) is not None and following.text != "}":
                items.append(self.value())
                if (separator := self.peek()) is not None and separator.text == ",":
                    self.take(",")
            self.take("}")
            return items
        raise MofError(f"line {token.line}: {token.text[:40]!r} is not a value")

    def instance(self) -> Resource:
        self.take("instance")
        self.take("of")
        class_name = self.take(kind="word").text
        alias = ""
        if (following := self.peek()) is not None and following.text == "as":
            self.take("as")
            alias = self.take(kind="alias").text
        self.take("{")
        properties: dict[str, Any] = {}
        while (following := self.peek()) is not None and following.text != "}":
            name = self.take(kind="word")
            if name.text in properties:
                raise MofError(f"line {name.line}: {class_name} sets {name.text} twice")
            self.take("=")
            properties[name.text] = self.value()
            self.take(";")
        self.take("}")
        self.take(";")
        return Resource(class_name, alias, properties)


def parse(text: str) -> Document:
    """The document in ``text``; MofError when it is not a DSC configuration document."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise MofError(f"the document is larger than {MAX_DOCUMENT_CHARS // (1024 * 1024)} MiB")
    parser = _Parser(_tokens(text))
    instances = []
    while parser.peek() is not None:
        instances.append(parser.instance())
    documents = [i for i in instances if i.class_name == DOCUMENT_CLASS]
    if len(documents) != 1:
        raise MofError(f"the document has {len(documents)} {DOCUMENT_CLASS} instances, not one")
    name = str(documents[0].properties.get("Name") or "")
    resources = [i for i in instances if i.class_name != DOCUMENT_CLASS]
    seen: set[str] = set()
    for resource in resources:
        match = RESOURCE_ID.fullmatch(resource.resource_id)
        if match is None:
            raise MofError(f"{resource.class_name} {resource.alias}: its ResourceID must be [Class]Name")
        if resource.resource_id.lower() in seen:
            raise MofError(f"two resources have the ResourceID {resource.resource_id}")
        seen.add(resource.resource_id.lower())
    if not name:
        raise MofError(f"the {DOCUMENT_CLASS} instance has no Name (the configuration's name)")
    return Document(name, resources)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "{" + ", ".join(_literal(item) for item in value) + "}"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return '"' + escaped.replace("\t", "\\t") + '"'
    raise MofError(f"{value!r} cannot be written in a document (strings, numbers, booleans and lists)")


def render(name: str, resources: list[tuple[str, str, dict[str, Any]]], version: str = "1.0.0") -> str:
    """A document as DSC's compiler writes it: ``resources`` are (class, name, properties); each
    gets ``ResourceID [class]name`` and ``ConfigurationName``. :func:`parse` reads it back."""
    blocks = []
    for index, (class_name, resource_name, properties) in enumerate(resources, start=1):
        values = {"ResourceID": f"[{class_name}]{resource_name}", **properties, "ConfigurationName": name}
        lines = "".join(f"    {key} = {_literal(value)};\n" for key, value in values.items())
        blocks.append(f"instance of {class_name} as ${class_name}{index}ref\n{{\n{lines}}};\n")
    document = (
        f'instance of {DOCUMENT_CLASS}\n{{\n    Version = "2.0.0";\n    MinimumCompatibleVersion = "1.0.0";\n'
        f'    CompatibleVersionAdditionalProperties = {{"Omi_BaseResource:ConfigurationName"}};\n'
        f"    Name = {_literal(name)};\n}};\n"
    )
    header = f"/*\n@TargetNode='localhost'\n@GeneratedBy=hybridops.arc\n@Version={version}\n*/\n\n"
    text = header + "\n".join(blocks) + "\n" + document
    parse(text)  # what is written must read back
    return text
