"""``nextLink`` paging of list results, with an opaque ``$skiptoken`` (ARM RPC).

Lists are ordered by the table's surrogate key; the token carries the last key of the page
(keyset paging: no offsets, stable while rows are added or deleted). Clients must treat the
token as opaque and follow ``nextLink`` as it is.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Query

from arc_controlplane.errors import ArmError

PAGE_SIZE = 100
SKIP_TOKEN_PARAMETER = "$skiptoken"  # noqa: S105 - a query parameter name
_PREFIX = "k1:"
_MAX_KEY = 2**31 - 1  # the keys are 32-bit integers on PostgreSQL

SkipTokenParameter = Annotated[
    str | None,
    Query(alias=SKIP_TOKEN_PARAMETER, description="Opaque; from the nextLink of the previous page."),
]
"""The ``$skiptoken`` query parameter as list routes declare it."""


def encode_skip_token(last_key: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{last_key}".encode()).rstrip(b"=").decode()


def decode_skip_token(token: str | None) -> int | None:
    """The last key of the previous page; None for the first page; ARM's 400 for a bad token."""
    if token is None:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith(_PREFIX) or not text[len(_PREFIX) :].isdigit():
            raise ValueError(text)
        key = int(text[len(_PREFIX) :])
        if key > _MAX_KEY:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ArmError(
            400,
            "InvalidSkipToken",
            "The $skiptoken is invalid: follow the nextLink of the previous page as it is.",
        ) from None
    return key


def next_link(base_url: str, path: str, query: Mapping[str, str], last_key: int) -> str:
    """The URL of the page after ``last_key``: same path and query, new ``$skiptoken``."""
    params = {name: value for name, value in query.items() if name != SKIP_TOKEN_PARAMETER}
    params[SKIP_TOKEN_PARAMETER] = encode_skip_token(last_key)
    return f"{base_url}{quote(path)}?{urlencode(params, quote_via=quote, safe='$')}"
