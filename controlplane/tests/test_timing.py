"""The heartbeat interval and the Disconnected threshold: the value, its bounds, the status it
derives, and how it reaches the application's context."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from arc_controlplane.db.tables import Machine
from arc_controlplane.machines.status import machine_status
from arc_controlplane.server.serve import build_context
from arc_controlplane.settings import ServerSettings
from arc_controlplane.timing import DEFAULT_TIMING, Timing, describe

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
CONNECTED_AT = NOW - dt.timedelta(hours=1)


def connected_machine(last_heartbeat: dt.datetime) -> Machine:
    values: dict[str, Any] = {
        "resource_id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.HybridCompute/machines/m",
        "name": "m",
        "location": "westeurope",
        "tags": {},
        "vm_id": "9b1d2c3e-0000-4000-8000-000000000001",
        "tenant_id": "t",
        "properties": {},
        "provisioning_state": "Succeeded",
        "connected": True,
        "credential_not_after": NOW + dt.timedelta(days=80),
        "last_heartbeat": last_heartbeat,
        "status_reason": None,
        "error_details": [],
        "last_status_change": CONNECTED_AT,
        "generation": 0,
    }
    return Machine(**values)


def test_the_default_is_five_minutes_and_disconnected_after_fifteen() -> None:
    assert Timing(dt.timedelta(minutes=5), dt.timedelta(minutes=15)) == DEFAULT_TIMING
    assert DEFAULT_TIMING.heartbeat_interval_seconds == 300
    assert ServerSettings(data_dir=Path("/x")).timing == DEFAULT_TIMING


@pytest.mark.parametrize("seconds", [5, 60, 3600])
def test_intervals_within_bounds_give_three_intervals_to_disconnected(seconds: int) -> None:
    timing = Timing.every(seconds)
    assert timing.heartbeat_interval_seconds == seconds
    assert timing.disconnected_after == dt.timedelta(seconds=3 * seconds)


@pytest.mark.parametrize("seconds", [-5, 0, 4, 3601, 86400])
def test_intervals_out_of_bounds_are_refused_with_the_range(seconds: int) -> None:
    with pytest.raises(ValueError, match=f"^{seconds} s is not a heartbeat interval: use 5-3600 seconds"):
        Timing.every(seconds)
    with pytest.raises(ValueError, match="use 5-3600 seconds"):
        ServerSettings(data_dir=Path("/x"), heartbeat_interval=seconds)


@pytest.mark.parametrize("value", [5.0, True, "5"])
def test_intervals_must_be_whole_numbers(value: Any) -> None:
    with pytest.raises(ValueError, match="is not a whole number of seconds"):
        Timing.every(value)


def test_a_threshold_not_longer_than_the_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="must be longer than the heartbeat interval"):
        Timing(dt.timedelta(seconds=10), dt.timedelta(seconds=10))
    with pytest.raises(ValueError, match="positive whole number of seconds"):
        Timing(dt.timedelta(seconds=1.5), dt.timedelta(seconds=10))


def test_status_follows_the_configured_threshold() -> None:
    short = Timing.every(5)
    fresh = connected_machine(NOW - dt.timedelta(seconds=14, microseconds=999_999))
    assert machine_status(fresh, NOW, short).status == "Connected"
    last = NOW - dt.timedelta(seconds=15)
    silent = connected_machine(last)
    status = machine_status(silent, NOW, short)
    assert (status.status, status.status_reason) == ("Disconnected", None)
    assert status.last_status_change == last + dt.timedelta(seconds=15)
    # The same machine with the default timing is alive: only the timing decided.
    assert machine_status(silent, NOW, DEFAULT_TIMING).status == "Connected"
    assert machine_status(connected_machine(NOW - dt.timedelta(minutes=15)), NOW, DEFAULT_TIMING).status == (
        "Disconnected"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (15, "15 s"),
        (60, "1 minute"),
        (900, "15 minutes"),
        (3600, "1 hour"),
        (5400, "1 h 30 min"),
        (10800, "3 hours"),
    ],
)
def test_thresholds_are_described_for_messages(seconds: int, text: str) -> None:
    assert describe(dt.timedelta(seconds=seconds)) == text


def test_the_context_carries_the_timing_of_the_settings(tmp_path: Path) -> None:
    ctx = build_context(ServerSettings(data_dir=tmp_path, heartbeat_interval=5))
    try:
        assert ctx.timing == Timing.every(5)
        assert ctx.timing.disconnected_after == dt.timedelta(seconds=15)
    finally:
        ctx.db.dispose()
