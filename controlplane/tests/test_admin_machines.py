"""``arc-controlplane machine list``, run as the real executable on SQLite and PostgreSQL.

The fleet is made through a running server: a machine pre-created through the management API
(AwaitingConnection) and agents that register and heartbeat through the agent API. Silence and
lapsed credentials are simulated by moving the stored times back, as the agent API tests do;
the listing must show what the management API shows for the same machines at the same moment.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agentapi_env import DATABASES, AgentApiEnv, start_env, utcnow
from conftest import run_cli
from sqlalchemy import func, select

from arc_controlplane.cli import main
from arc_controlplane.db.tables import AuditEntry, ResourceGroup
from arc_controlplane.timing import DEFAULT_TIMING

HC = "2026-09-01"
MACHINE_KEYS = {
    "name",
    "resourceGroup",
    "subscriptionId",
    "resourceId",
    "status",
    "statusReason",
    "agentVersion",
    "lastHeartbeat",
    "lastStatusChange",
}
HEADERS = ["NAME", "RESOURCE GROUP", "STATUS", "AGENT VERSION", "LAST HEARTBEAT"]


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Cli:
    """``arc-controlplane`` on one data directory and database."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url

    def run(self, *args: str) -> tuple[int, str, str]:
        result = run_cli(*args, "--data-dir", str(self.data_dir), "--database-url", self.database_url)
        return result.returncode, result.stdout, result.stderr

    def text(self, *args: str) -> str:
        code, out, err = self.run("machine", "list", *args)
        assert (code, err) == (0, ""), err
        return out

    def machines(self, *args: str) -> list[dict[str, Any]]:
        answer = json.loads(self.text(*args, "--json"))
        assert set(answer) == {"machines"}
        machines: list[dict[str, Any]] = answer["machines"]
        for machine in machines:
            assert set(machine) == MACHINE_KEYS
        return machines


def columns(text: str) -> list[dict[str, str]]:
    """The rows of a ``machine list`` table, cut where the header's columns start."""
    header, *lines = text.splitlines()
    starts = [header.index(name) for name in HEADERS]
    assert starts == sorted(starts) and starts[0] == 0, header
    ends = [*starts[1:], None]
    rows = []
    for line in lines:
        for start in starts[1:]:
            assert line[start - 2 : start] == "  " and line[start] != " ", (line, start)  # aligned
        rows.append(
            {name: line[start:end].strip() for name, start, end in zip(HEADERS, starts, ends, strict=True)}
        )
    return rows


# -- a fleet on a running server ----------------------------------------------------------------


@dataclass
class Fleet:
    env: AgentApiEnv
    cli: Cli
    group_a: str
    group_b: str
    awaiting: str
    """In ``group_b``, pre-created through the management API; everything else is in ``group_a``."""
    alive: str
    silent: str
    expired: str
    quiet: str
    """Connected, last heartbeat a minute ago: Disconnected for ``--heartbeat-interval 5``."""
    vm_ids: dict[str, str]

    @property
    def subscription_id(self) -> str:
        return self.env.subscription_id

    def arm_get(self, group: str, name: str) -> dict[str, Any]:
        """Machines_Get by a Reader, as a user of the management API reads the machine."""
        reply = self.env.http.get(
            f"/subscriptions/{self.subscription_id}/resourceGroups/{group}/providers/"
            f"Microsoft.HybridCompute/machines/{name}",
            params={"api-version": HC},
            headers={"Authorization": f"Bearer {self.env.principal_token('Reader')}"},
        )
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def group_of(self, name: str) -> str:
        return self.group_b if name == self.awaiting else self.group_a


def add_group(env: AgentApiEnv, name: str) -> None:
    with env.db.session() as session:
        session.add(
            ResourceGroup(
                subscription_id=env.subscription_id,
                name=name,
                name_lower=name.lower(),
                location="westeurope",
                tags={},
                created_at=utcnow(),
            )
        )


def connect(env: AgentApiEnv, group: str, name: str) -> str:
    """Register an agent as ``name`` in ``group``, heartbeat once; its vmId."""
    agent = env.agent()
    reply = agent.register(env.onboarding_token(), env.registration(agent, name, resourceGroup=group))
    assert reply.status_code == 201, reply.text
    beat = agent.heartbeat(agentVersion="1.51.0")
    assert beat.status_code == 200, beat.text
    return agent.vm_id


@pytest.fixture(scope="module", params=DATABASES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp(f"fleet-{request.param}")
    envs = start_env(request.param, base, request)
    env = next(envs)
    try:
        url = env.db.engine.url.render_as_string(hide_password=False)
        suffix = uuid.uuid4().hex[:6]
        group_a, group_b = f"fleet-a-{suffix}", f"Fleet-B-{suffix}"
        add_group(env, group_a)
        add_group(env, group_b)

        awaiting = "web-awaiting"
        reply = env.http.put(
            f"/subscriptions/{env.subscription_id}/resourceGroups/{group_b}/providers/"
            f"Microsoft.HybridCompute/machines/{awaiting}",
            params={"api-version": HC},
            json={"location": "westeurope"},
            headers={"Authorization": f"Bearer {env.onboarding_token()}"},
        )
        assert reply.status_code == 200, reply.text

        # Made in an order other than the listing's, which sorts by name regardless of case.
        names = {
            "alive": "zulu-alive",
            "silent": "Mike-silent",
            "expired": "alpha-expired",
            "quiet": "kilo-quiet",
        }
        vm_ids = {name: connect(env, group_a, name) for name in names.values()}
        now = utcnow()
        # Last status changes long ago, so that the Disconnected ones date from heartbeat + threshold.
        long_ago = now - dt.timedelta(hours=1)
        env.update_machine(
            vm_ids[names["silent"]],
            last_heartbeat=now - DEFAULT_TIMING.disconnected_after - dt.timedelta(seconds=1),
            last_status_change=long_ago,
        )
        env.update_machine(vm_ids[names["expired"]], credential_not_after=now - dt.timedelta(minutes=1))
        env.update_machine(
            vm_ids[names["quiet"]], last_heartbeat=now - dt.timedelta(minutes=1), last_status_change=long_ago
        )
        yield Fleet(env, Cli(env.server.data_dir, url), group_a, group_b, awaiting, vm_ids=vm_ids, **names)
    finally:
        next(envs, None)  # the rest of start_env: stops the server, checks its log


def test_the_json_shows_what_the_management_api_shows(fleet: Fleet) -> None:
    machines = fleet.cli.machines("--subscription-id", fleet.subscription_id)
    assert [(m["resourceGroup"], m["name"]) for m in machines] == [
        (fleet.group_a, fleet.expired),
        (fleet.group_a, fleet.quiet),
        (fleet.group_a, fleet.silent),
        (fleet.group_a, fleet.alive),
        (fleet.group_b, fleet.awaiting),
    ]
    by_name = {m["name"]: m for m in machines}
    assert {name: (m["status"], m["statusReason"]) for name, m in by_name.items()} == {
        fleet.alive: ("Connected", None),
        fleet.quiet: ("Connected", None),
        fleet.silent: ("Disconnected", None),
        fleet.expired: ("Disconnected", "Expired"),
        fleet.awaiting: ("AwaitingConnection", None),
    }
    for name, listed in by_name.items():
        arm = fleet.arm_get(fleet.group_of(name), name)
        properties = arm["properties"]
        assert listed["resourceId"] == arm["id"]
        assert arm["id"].startswith(
            f"/subscriptions/{fleet.subscription_id}/resourceGroups/{fleet.group_of(name)}/"
        )
        assert listed["subscriptionId"] == fleet.subscription_id
        assert (listed["status"], listed["statusReason"], listed["agentVersion"]) == (
            properties["status"],
            properties["statusReason"],
            properties["agentVersion"],
        )
        arm_change = dt.datetime.fromisoformat(properties["lastStatusChange"]).replace(microsecond=0)
        assert dt.datetime.fromisoformat(listed["lastStatusChange"]) == arm_change

    assert by_name[fleet.alive]["agentVersion"] == "1.51.0"  # as the heartbeat reported it
    assert (by_name[fleet.awaiting]["agentVersion"], by_name[fleet.awaiting]["lastHeartbeat"]) == (None, None)
    for name, vm_id in fleet.vm_ids.items():
        stored = fleet.env.machine(vm_id)
        assert stored is not None and stored.last_heartbeat is not None
        assert by_name[name]["lastHeartbeat"] == rfc3339(stored.last_heartbeat)
    silent = fleet.env.machine(fleet.vm_ids[fleet.silent])
    assert silent is not None and silent.last_heartbeat is not None
    assert by_name[fleet.silent]["lastStatusChange"] == rfc3339(
        silent.last_heartbeat + DEFAULT_TIMING.disconnected_after
    )

    # Without a filter: every machine of every subscription, in the same order.
    everything = fleet.cli.machines()
    keys = [(m["subscriptionId"], m["resourceGroup"].lower(), m["name"].lower()) for m in everything]
    assert keys == sorted(keys)
    assert [m for m in everything if m["subscriptionId"] == fleet.subscription_id] == machines


def test_the_text_is_an_aligned_table(fleet: Fleet) -> None:
    text = fleet.cli.text("--resource-group", fleet.group_a)
    assert text.splitlines()[0].split() == [
        "NAME",
        "RESOURCE",
        "GROUP",
        "STATUS",
        "AGENT",
        "VERSION",
        "LAST",
        "HEARTBEAT",
    ]
    rows = columns(text)
    assert [(r["NAME"], r["RESOURCE GROUP"], r["STATUS"], r["AGENT VERSION"]) for r in rows] == [
        (fleet.expired, fleet.group_a, "Disconnected (Expired)", "1.51.0"),
        (fleet.quiet, fleet.group_a, "Connected", "1.51.0"),
        (fleet.silent, fleet.group_a, "Disconnected", "1.51.0"),
        (fleet.alive, fleet.group_a, "Connected", "1.51.0"),
    ]
    listed = {m["name"]: m for m in fleet.cli.machines("--resource-group", fleet.group_a)}
    for row in rows:
        assert row["LAST HEARTBEAT"] == listed[row["NAME"]]["lastHeartbeat"]
        dt.datetime.strptime(row["LAST HEARTBEAT"], "%Y-%m-%dT%H:%M:%SZ")

    (awaiting,) = columns(fleet.cli.text("--resource-group", fleet.group_b))
    assert awaiting == {
        "NAME": fleet.awaiting,
        "RESOURCE GROUP": fleet.group_b,
        "STATUS": "AwaitingConnection",
        "AGENT VERSION": "-",
        "LAST HEARTBEAT": "-",
    }


def test_filters_by_group_and_subscription(fleet: Fleet) -> None:
    names = [m["name"] for m in fleet.cli.machines("--resource-group", fleet.group_b.lower())]
    assert names == [fleet.awaiting]  # group names match regardless of case, as in ARM
    in_a = fleet.cli.machines(
        "--resource-group", fleet.group_a.upper(), "--subscription-id", fleet.subscription_id
    )
    assert [m["name"] for m in in_a] == [fleet.expired, fleet.quiet, fleet.silent, fleet.alive]
    assert {m["resourceGroup"] for m in in_a} == {fleet.group_a}  # shown as it was created

    # An unknown group or subscription lists nothing: not an error, and the message says why.
    assert fleet.cli.machines("--resource-group", "no-such-group") == []
    assert fleet.cli.text("--resource-group", "no-such-group") == (
        "No machines: there is no resource group 'no-such-group' here; check the name, or leave the "
        "filter out to list every machine.\n"
    )
    other = str(uuid.uuid4())
    assert fleet.cli.text("--subscription-id", other) == (
        f"No machines: there is no subscription {other} here; check the name, or leave the filter out "
        "to list every machine.\n"
    )
    assert fleet.cli.text(
        "--subscription-id", fleet.subscription_id, "--resource-group", "no-such-group"
    ) == (
        f"No machines: there is no resource group 'no-such-group' in subscription {fleet.subscription_id}; "
        "check the name, or leave the filter out to list every machine.\n"
    )
    assert fleet.cli.machines("--subscription-id", other, "--resource-group", fleet.group_a) == []


def test_the_status_follows_the_heartbeat_interval_given(fleet: Fleet) -> None:
    """The CLI cannot know what the server runs with: the operator passes serve's value."""
    default = {m["name"]: m for m in fleet.cli.machines("--resource-group", fleet.group_a)}
    fast = {
        m["name"]: m
        for m in fleet.cli.machines("--resource-group", fleet.group_a, "--heartbeat-interval", "5")
    }
    assert default[fleet.quiet]["status"] == "Connected"
    assert fast[fleet.quiet]["status"] == "Disconnected"  # a minute is more than 3 x 5 s
    quiet = fleet.env.machine(fleet.vm_ids[fleet.quiet])
    assert quiet is not None and quiet.last_heartbeat is not None
    assert default[fleet.quiet]["lastStatusChange"] == rfc3339(quiet.last_status_change)
    assert fast[fleet.quiet]["lastStatusChange"] == rfc3339(quiet.last_heartbeat + dt.timedelta(seconds=15))
    slow = fleet.cli.machines("--resource-group", fleet.group_a, "--heartbeat-interval", "3600")
    assert {m["name"]: m["status"] for m in slow}[fleet.silent] == "Connected"  # 15 min is under 3 h
    assert fast[fleet.expired]["statusReason"] == "Expired"


def test_listing_writes_no_audit_entry(fleet: Fleet) -> None:
    def entries() -> int:
        with fleet.env.db.session() as session:
            return session.scalar(select(func.count()).select_from(AuditEntry)) or 0

    before = entries()
    fleet.cli.text()
    fleet.cli.machines()
    assert entries() == before


# -- without a server -------------------------------------------------------------------------


def test_an_empty_fleet_is_one_line(database_url: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data", database_url)
    code, out, err = cli.run("init", "--json")
    assert code == 0, err
    ids = json.loads(out)
    assert cli.text() == (
        "No machines yet: create one through the management API (Machines_CreateOrUpdate) or onboard "
        "one with 'azcmagent connect'.\n"
    )
    assert cli.machines() == []
    assert cli.text("--resource-group", "ARC-SERVERS") == "No machines in resource group 'ARC-SERVERS'.\n"
    assert cli.text("--subscription-id", ids["subscriptionId"].upper()) == (
        f"No machines in subscription {ids['subscriptionId']}.\n"
    )
    both = cli.text("--resource-group", "arc-servers", "--subscription-id", ids["subscriptionId"])
    assert both == f"No machines in resource group 'arc-servers' of subscription {ids['subscriptionId']}.\n"


def test_before_init_is_a_runtime_error(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "fresh", f"sqlite:///{tmp_path / 'fresh' / 'controlplane.db'}")
    code, out, err = cli.run("machine", "list")
    assert (code, out) == (1, "")
    assert err.startswith("arc-controlplane: error: there is no database at") and err.count("\n") == 1
    assert "run 'arc-controlplane init' first" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--heartbeat-interval", "4"],
         "--heartbeat-interval: 4 s is not a heartbeat interval: use 5-3600 seconds (300 by default)"),
        (["--heartbeat-interval", "3601"], "--heartbeat-interval: 3601 s is not a heartbeat interval"),
        (["--heartbeat-interval", "five"],
         "--heartbeat-interval: 'five' is not a number of seconds: use a whole number from 5 to 3600"),
        (["--heartbeat-interval", "5.5"], "argument --heartbeat-interval: '5.5' is not a number of seconds"),
        (["--resource-group", "bad."], "argument --resource-group: 'bad.' is not a resource group name"),
        (["--subscription-id", "nope"], "argument --subscription-id: 'nope' is not an id (a GUID"),
        (["--all"], "unrecognized arguments: --all"),
    ],
)  # fmt: skip
def test_usage_mistakes_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code = main(["machine", "list", "--data-dir", str(tmp_path / "data"), *argv])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("arc-controlplane: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "data").exists()  # refused before anything was opened
