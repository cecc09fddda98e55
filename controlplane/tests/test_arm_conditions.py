"""ETags and conditional writes of machines, as ARM has them (issue 10: two operators updating
one machine), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from armenv import ArmEnv, arm_environment, error_of

GROUP = "conditions"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmEnv]:
    with arm_environment(request, tmp_path_factory) as env:
        env.add_group(GROUP)
        yield env


def test_writes_carry_etags_and_honour_if_match(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "etag-1")
    created = arm.call("PUT", path, json={"location": "westeurope", "tags": {"a": "1"}})
    first = created.headers["ETag"]
    assert first.startswith('"') and arm.call("GET", path).headers["ETag"] == first
    stale = arm.call("PATCH", path, json={"tags": {"a": "2"}}, headers={"If-Match": '"not-it"'})
    assert stale.status_code == 412 and error_of(stale)["code"] == "PreconditionFailed"
    assert arm.call("GET", path).json()["tags"] == {"a": "1"}
    moved = arm.call("PATCH", path, json={"tags": {"a": "2"}}, headers={"If-Match": first})
    assert moved.status_code == 200 and moved.headers["ETag"] != first
    again = arm.call("PATCH", path, json={"tags": {"a": "3"}}, headers={"If-Match": first})
    assert again.status_code == 412
    assert "its ETag is now" in error_of(again)["message"]
    assert arm.call("DELETE", path, headers={"If-Match": first}).status_code == 412
    assert arm.call("GET", path).status_code == 200
    assert arm.call("PATCH", path, json={"tags": {}}, headers={"If-Match": "*"}).status_code == 200
    assert (
        arm.call("DELETE", path, headers={"If-Match": arm.call("GET", path).headers["ETag"]}).status_code
        == 202
    )


def test_if_none_match_star_only_creates(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "create-only")
    assert (
        arm.call("PUT", path, json={"location": "westeurope"}, headers={"If-None-Match": "*"}).status_code
        == 200
    )
    refused = arm.call(
        "PUT", path, json={"location": "westeurope", "tags": {"x": "y"}}, headers={"If-None-Match": "*"}
    )
    assert refused.status_code == 412
    assert arm.call("GET", path).json()["tags"] == {}
    missing = arm.call("PATCH", arm.machine(GROUP, "nowhere"), json={"tags": {}}, headers={"If-Match": "*"})
    assert missing.status_code == 404  # the machine's absence is said first, as ARM does


def patch_with(
    arm: ArmEnv, path: str, etag: str, value: str, start: threading.Barrier, out: list[int]
) -> None:
    start.wait()
    out.append(arm.call("PATCH", path, json={"tags": {"by": value}}, headers={"If-Match": etag}).status_code)


def test_two_operators_with_one_etag_one_wins_one_gets_412(arm: ArmEnv) -> None:
    path = arm.machine(GROUP, "contended")
    arm.call("PUT", path, json={"location": "westeurope"})
    for round_ in range(8):
        etag = arm.call("GET", path).headers["ETag"]
        statuses: list[int] = []
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=patch_with, args=(arm, path, etag, f"op{n}-{round_}", start, statuses))
            for n in (1, 2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 412], statuses
