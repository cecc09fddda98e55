"""Text that enters and leaves the control plane: Unicode scalar values only.

JSON can spell an unpaired UTF-16 surrogate (``"\\ud800"``): it is valid JSON, Python decodes it
into a ``str``, and that ``str`` cannot be encoded as UTF-8. Stored, such a value used to make
every answer that carried it fail, lists included. So every request body is checked once at
the edge (:func:`unpaired_surrogate_at`, called by the base models of each API), and answers
replace any such character that an older version let into the database (:func:`scrub`).
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def has_unpaired_surrogate(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def unpaired_surrogate_at(value: Any) -> str | None:
    """Where in ``value`` (a decoded JSON document) a string or member name holds an unpaired
    surrogate, as a dotted path (``tags.owner``, ``properties.osProfile``; itself scrubbed, so
    that it can go into a message); None if nowhere."""
    found = _find(value, "")
    return None if found is None else scrub(found)


def _find(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return (where or "a value") if has_unpaired_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and has_unpaired_surrogate(key):
                return path
            found = _find(item, path)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def surrogate_problem(where: str) -> str:
    """The message for a value found by :func:`unpaired_surrogate_at`, naming it and the fix."""
    return (
        f"{where} holds an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text: "
        "send Unicode characters only (a pair of surrogates for characters beyond U+FFFF)"
    )


def text_only(document: Any) -> Any:
    """``document`` unchanged, or ValueError naming where it holds an unpaired surrogate (for the
    ``mode="before"`` model validators of the request bodies)."""
    where = unpaired_surrogate_at(document)
    if where is not None:
        raise ValueError(surrogate_problem(where))
    return document


def scrub(text: str) -> str:
    """``text`` with every unpaired surrogate replaced by U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT, text)


def scrub_document(value: Any) -> Any:
    """A copy of a JSON document with :func:`scrub` applied to every string and member name."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub_document(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_document(item) for item in value]
    return value
