"""The JSON answers of every API: rendered so that one stored value can never break them.

Starlette's ``JSONResponse`` encodes with ``ensure_ascii=False`` and fails with
``UnicodeEncodeError`` on an unpaired surrogate; a machine whose tag held one (let in by an older
version, before bodies were checked at the edge) then took down every list it was part of.
:class:`JsonResponse` renders the same bytes in the normal case and, only when encoding fails,
replaces the offending characters with U+FFFD and logs that it did.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import JSONResponse

from arc_controlplane.text import scrub_document

LOG = logging.getLogger(__name__)


def render_json(content: Any) -> bytes:
    """Compact UTF-8 JSON of ``content``; unpaired surrogates become U+FFFD."""
    try:
        return _dumps(content).encode("utf-8")
    except UnicodeEncodeError:
        LOG.warning(
            "an answer held text with an unpaired surrogate (stored by an older version); "
            "it was sent with U+FFFD in its place"
        )
        return _dumps(scrub_document(content)).encode("utf-8")


def _dumps(content: Any) -> str:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return render_json(content)
