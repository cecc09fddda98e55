from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import pytest
from himds_helpers import make_state

from arc_agent.himds.api import HimdsApi, Request

OK_HEADERS = {"metadata": "true"}


def handle(
    target: str, headers: dict[str, str] | None = None, method: str = "GET", api: HimdsApi | None = None
) -> tuple[int, dict[str, object]]:
    api = api or HimdsApi("9.9")
    response = api.handle(Request(method, target, OK_HEADERS if headers is None else headers))
    body = response.body
    return response.status, json.loads(body) if isinstance(body, bytes) else dict(body)


def test_agent_status() -> None:
    assert handle("/agentstatus?api-version=2019-08-15") == (
        HTTPStatus.OK,
        {"status": "Disconnected", "lastHeartBeat": None, "agentVersion": "9.9"},
    )


@pytest.mark.parametrize("value", ["true", "True", " TRUE "])
def test_metadata_header_value_is_case_insensitive(value: str) -> None:
    assert handle("/agentstatus?api-version=2019-08-15", {"metadata": value})[0] == HTTPStatus.OK


@pytest.mark.parametrize("headers", [{}, {"metadata": "false"}, {"metadata": ""}])
def test_metadata_header_is_required(headers: dict[str, str]) -> None:
    status, body = handle("/agentstatus?api-version=2019-08-15", headers)
    assert status == HTTPStatus.BAD_REQUEST
    assert body["error"] == "invalid_request"
    assert "Metadata: true" in str(body["error_description"])


def test_forwarded_requests_are_refused_before_anything_else() -> None:
    status, body = handle("/nowhere", {"metadata": "true", "x-forwarded-for": "10.0.0.1"})
    assert status == HTTPStatus.BAD_REQUEST
    assert "X-Forwarded-For" in str(body["error_description"])


@pytest.mark.parametrize(
    "target",
    [
        "/agentstatus",
        "/agentstatus?api-version=",
        "/agentstatus?api-version=2019-08-15&api-version=2019-08-15",
    ],
)
def test_api_version_missing_or_repeated(target: str) -> None:
    status, body = handle(target)
    assert status == HTTPStatus.BAD_REQUEST
    assert str(body["error_description"]).endswith("Supported are 2019-08-15")


def test_api_version_unsupported() -> None:
    status, body = handle("/agentstatus?api-version=2020-06-01")
    assert status == HTTPStatus.BAD_REQUEST
    assert body["error_description"] == "Invalid api-version '2020-06-01'. Supported are 2019-08-15"


def test_unknown_path() -> None:
    status, body = handle("/metadata/nothing?api-version=2019-08-15")
    assert status == HTTPStatus.NOT_FOUND
    assert body == {"error": "not_found", "error_description": "No such endpoint: /metadata/nothing"}


def test_only_get_is_allowed() -> None:
    response = HimdsApi("9.9").handle(Request("POST", "/agentstatus?api-version=2019-08-15", OK_HEADERS))
    assert response.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.headers == {"Allow": "GET"}


def test_agent_status_when_connected_comes_from_the_status_provider() -> None:
    state = make_state()
    known: dict[str, Any] = {"status": "Expired", "lastHeartbeat": "2026-11-22T08:05:00Z"}

    def status() -> Mapping[str, Any]:
        return known

    api = HimdsApi("9.9", state=lambda: state, status=status)
    assert handle("/agentstatus?api-version=2019-08-15", api=api) == (
        HTTPStatus.OK,
        {"status": "Expired", "lastHeartBeat": "2026-11-22T08:05:00Z", "agentVersion": "9.9"},
    )
    known.clear()  # connected, nothing heard from the daemon yet
    assert handle("/agentstatus?api-version=2019-08-15", api=api)[1]["status"] == "Connected"
    assert handle("/agentstatus?api-version=2019-08-15", api=api)[1]["lastHeartBeat"] is None


def test_agent_status_when_not_connected_ignores_the_provider() -> None:
    api = HimdsApi("9.9", status=lambda: {"status": "Connected", "lastHeartbeat": "x"})
    assert handle("/agentstatus?api-version=2019-08-15", api=api)[1]["status"] == "Disconnected"


def test_metadata_header_is_checked_before_the_path() -> None:
    status, body = handle("/metadata/instance?api-version=2020-06-01", {})
    assert status == HTTPStatus.BAD_REQUEST
    assert "Metadata: true" in str(body["error_description"])
