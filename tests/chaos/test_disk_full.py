"""The control plane's disk full while agents heartbeat and operators write, on SQLite and
PostgreSQL (issue 10, finding 6): writes are refused with a clear error (ARM's 507 with
``Retry-After``), reads are still served, the agents say what happened, and the moment space
returns everything works again, with nothing corrupted."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from arc_lab import Lab
from arc_lab.disks import fill, small_filesystem
from databases import Database, database


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, Database, object]]:
    with (
        small_filesystem("24m" if request.param == "sqlite" else "160m") as disk,
        database(request.param, disk) as db,
    ):
        lab = Lab.start(2, "--heartbeat-interval", "5", database_url=db.url)
        try:
            for host in lab.hosts:
                lab.connect(host, host.name)
            yield lab, db, disk
        finally:
            lab.stop()


def write(
    lab: Lab, token: str, name: str, tags: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, object]]:
    body = json.dumps({"location": lab.plane.init["location"], "tags": tags}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(
        lab.env.url + lab.plane.machine_path(name), data=body, headers=headers, method="PUT"
    )
    try:
        with lab.plane.open(request) as reply:
            return reply.status, dict(reply.headers), json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(error.read())


def wait_for(check, seconds: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(1)
    return time.monotonic() - started


def test_a_full_disk_refuses_writes_clearly_and_everything_recovers_at_once(setup) -> None:  # type: ignore[no-untyped-def]
    lab, db, disk = setup
    token = lab.plane.token(lab.plane.admin["clientId"], lab.plane.admin["clientSecret"])
    acknowledged = [name for name in (f"pre-{n}" for n in range(5)) if write(lab, token, name, {})[0] == 200]
    filler = fill(disk)
    refused = None
    for n in range(60):  # enough new rows that the database must grow
        status, headers, body = write(lab, token, f"during-{n}", {f"t{k}": "x" * 200 for k in range(40)})
        if status == 200:
            acknowledged.append(f"during-{n}")
            continue
        assert status == 507, body
        refused = (headers, body)
        break
    assert refused is not None, "the full disk refused no write"
    headers, body = refused
    assert body["error"]["code"] == "InsufficientStorage" and int(headers["retry-after"]) > 0
    assert lab.plane.machine("pre-0") is not None, "reads must still be served"
    host = lab.hosts[0]

    def agent_says_so() -> bool:
        shown = host.json("show")
        return shown["status"] == "Disconnected" and "InsufficientStorage" in shown["agentErrorDetails"]

    if db.sqlite_file is not None:  # on SQLite a heartbeat needs new space; PostgreSQL may update in place
        wait_for(agent_says_so, 30, "the agent to report the full disk")
    filler.unlink()

    def all_connected() -> bool:
        shown = [h.json("show") for h in lab.hosts]
        return all(view["status"] == "Connected" and view["agentErrorCode"] == "" for view in shown)

    back = wait_for(all_connected, 30, "the agents to heartbeat again")
    assert write(lab, token, "after", {})[0] == 200
    acknowledged.append("after")
    for name in acknowledged:
        assert lab.plane.machine(name) is not None, f"acknowledged write {name} lost"
    assert db.integrity() == "ok"
    log = (lab.env.state_dir / "controlplane" / "serve.log").read_text()
    assert "Traceback" not in log and "unexpected error" not in log
    print(f"\nchaos: disk full: writes refused with 507, agents back {back:.0f} s after space returned")
