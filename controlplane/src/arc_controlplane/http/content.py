"""Request bodies of management calls are JSON: anything else is ARM's 415."""

from __future__ import annotations

from email.message import Message

from fastapi import Request

from arc_controlplane.errors import ArmError


def is_json(content_type: str) -> bool:
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def require_json_content(request: Request) -> None:
    """FastAPI dependency: a body must come as ``application/json`` (or ``+json``)."""
    content_type = request.headers.get("content-type")
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    if content_type is None and not has_body:
        return  # no body at all: the body's own validation says what is missing
    if content_type is None or not is_json(content_type):
        shown = (content_type or "none")[:100]
        raise ArmError(
            415,
            "UnsupportedMediaType",
            f"The content media type '{shown}' is not supported. Only 'application/json' is supported.",
        )
