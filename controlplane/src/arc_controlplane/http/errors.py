"""ARM error bodies: ``{"error": {"code": ..., "message": ...}}`` for every failure of a
management call, validation errors and unknown routes included."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from arc_controlplane.db.failures import StorageFailure, storage_failure
from arc_controlplane.errors import ArmError
from arc_controlplane.http.responses import JsonResponse


def not_found(kind: str, resource_id: str) -> ArmError:
    code = "ResourceGroupNotFound" if kind == "resourceGroup" else "ResourceNotFound"
    return ArmError(404, code, f"The {kind} '{resource_id}' was not found.")


def error_response(error: ArmError) -> JsonResponse:
    return JsonResponse(error.body(), status_code=error.status, headers=error.headers)


RETRY_AFTER_SECONDS = 10
"""What a caller is told to wait after a failure of the database (507, 503)."""


def unexpected_error(exc: BaseException) -> ArmError:
    """The answer to an exception no route handled: a failure of the database says so (507 full,
    503 unavailable, both with ``Retry-After``); anything else is a 500."""
    failure = storage_failure(exc)
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if failure is StorageFailure.FULL:
        return ArmError(
            507,
            "InsufficientStorage",
            "The control plane's database has no space left, so this change was not saved; reads "
            f"still work. Send the request again after {RETRY_AFTER_SECONDS} seconds (operators: free "
            "space on the database's disk).",
            retry,
        )
    if failure is StorageFailure.UNAVAILABLE:
        return ArmError(
            503,
            "ServiceUnavailable",
            "The control plane cannot reach its database right now. Send the request again after "
            f"{RETRY_AFTER_SECONDS} seconds (operators: check the database server and its disk).",
            retry,
        )
    return ArmError(
        500, "InternalServerError", "The server met an unexpected error; its log has the details."
    )


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where or 'body'}: {message}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


_STATUS_CODES = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
}


def install_error_handlers(app: FastAPI) -> None:
    async def on_arm_error(request: Request, exc: Exception) -> JsonResponse:
        assert isinstance(exc, ArmError)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JsonResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(ArmError(400, "InvalidRequestContent", _describe(list(exc.errors()))))

    async def on_http_error(request: Request, exc: Exception) -> JsonResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "Error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404:
            message = f"No route for {request.method} {request.url.path}."
        headers = dict(exc.headers) if exc.headers else None
        return error_response(ArmError(exc.status_code, code, message, headers))

    async def on_unexpected(request: Request, exc: Exception) -> JsonResponse:
        return error_response(unexpected_error(exc))

    app.add_exception_handler(ArmError, on_arm_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
