"""How often agents heartbeat and when a silent machine reads ``Disconnected``.

One value is configured (``serve --heartbeat-interval``, 300 s by default, as Azure's agents
heartbeat every 5 minutes); the Disconnected threshold is three intervals (15 minutes by
default: docs/reference/connection.md, Disconnected after more than 15 minutes without a
heartbeat). Azure does not publish how it derives either, so the rule of three is ours. Shorter
intervals are for tests that must see a machine turn ``Disconnected`` within seconds. Built once
from the settings and carried by the application's context (``AppContext.timing``), never read
from a global.

Standard library only: the command line imports it to validate the option.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

DEFAULT_HEARTBEAT_INTERVAL_SECONDS = 300
MIN_HEARTBEAT_INTERVAL_SECONDS = 5
MAX_HEARTBEAT_INTERVAL_SECONDS = 3600
DISCONNECTED_AFTER_INTERVALS = 3
"""A machine is ``Disconnected`` once this many heartbeat intervals pass without one."""


@dataclass(frozen=True)
class Timing:
    heartbeat_interval: dt.timedelta
    """What agents are told (``heartbeatIntervalSeconds``, the clone 429's ``Retry-After``)."""
    disconnected_after: dt.timedelta
    """No accepted heartbeat for this long: the machine reads ``Disconnected``."""

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= dt.timedelta(0) or self.heartbeat_interval.microseconds:
            raise ValueError(
                "the heartbeat interval must be a positive whole number of seconds, not "
                f"{self.heartbeat_interval}"
            )
        if self.disconnected_after <= self.heartbeat_interval:
            raise ValueError(
                f"the Disconnected threshold ({self.disconnected_after}) must be longer than the heartbeat "
                f"interval ({self.heartbeat_interval})"
            )

    @classmethod
    def every(cls, seconds: int) -> Timing:
        """Heartbeats every ``seconds`` (``MIN_...`` to ``MAX_HEARTBEAT_INTERVAL_SECONDS``);
        Disconnected after ``DISCONNECTED_AFTER_INTERVALS`` of them. ValueError otherwise."""
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise ValueError(f"{seconds!r} is not a whole number of seconds")
        if not MIN_HEARTBEAT_INTERVAL_SECONDS <= seconds <= MAX_HEARTBEAT_INTERVAL_SECONDS:
            raise ValueError(
                f"{seconds} s is not a heartbeat interval: use {MIN_HEARTBEAT_INTERVAL_SECONDS}-"
                f"{MAX_HEARTBEAT_INTERVAL_SECONDS} seconds ({DEFAULT_HEARTBEAT_INTERVAL_SECONDS} by default)"
            )
        interval = dt.timedelta(seconds=seconds)
        return cls(interval, interval * DISCONNECTED_AFTER_INTERVALS)

    @property
    def heartbeat_interval_seconds(self) -> int:
        """The interval in seconds, as the agent API states it (hot paths read it once, up front)."""
        return int(self.heartbeat_interval.total_seconds())

    def describe_disconnected_after(self) -> str:
        """The threshold for messages: ``15 minutes``, ``15 s``, ``1 h 30 min``..."""
        return describe(self.disconnected_after)


def describe(duration: dt.timedelta) -> str:
    seconds = int(duration.total_seconds())
    if seconds % 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes % 60 == 0:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


DEFAULT_TIMING = Timing.every(DEFAULT_HEARTBEAT_INTERVAL_SECONDS)
"""Heartbeats every 5 minutes, Disconnected after 15 (an immutable value)."""
