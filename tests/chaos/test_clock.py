"""The host's clock jumps, forwards and backwards, under a running agent (issue 10).

A kernel clock is shared by every test host and the controller, so the jump is made for himds
alone: libfaketime (baked into the hosts) reads its offset from a file at every call, and the
test writes that file. Within the control plane's leeway (60 s) nothing must change; a day off
either way, the control plane refuses the agent's assertions, and ``show`` must say so, naming
the clock; once the clock is right again, the agent must be back within half a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from arc_lab import Host, Lab

CLOCK = "/etc/himds-clock"
DROP_IN = """[Service]
Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
Environment=FAKETIME_TIMESTAMP_FILE=/etc/himds-clock
Environment=FAKETIME_NO_CACHE=1
Environment=FAKETIME_DONT_FAKE_MONOTONIC=1
"""


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    lab = Lab.start(1, "--heartbeat-interval", "5")
    try:
        host = lab.hosts[0]
        host.sh(f"echo +0 > {CLOCK}; mkdir -p /etc/systemd/system/himdsd.service.d")
        host.sh("cat > /etc/systemd/system/himdsd.service.d/clock.conf", stdin=DROP_IN)
        host.sh("systemctl daemon-reload && systemctl restart himdsd")
        lab.connect(host, host.name)
        yield host
    finally:
        lab.stop()


def set_clock(host: Host, offset: str) -> None:
    host.sh(f"echo {offset} > {CLOCK}")


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(1)
    return time.monotonic() - started


def connected(host: Host) -> bool:
    shown = host.json("show")
    return bool(shown["status"] == "Connected" and shown["agentErrorCode"] == "")


def says_clock(host: Host) -> bool:
    shown = host.json("show")
    return bool(shown["status"] == "Disconnected" and "clock" in shown["agentErrorDetails"])


def test_a_small_jump_within_the_leeway_changes_nothing(host: Host) -> None:
    wait_for(lambda: connected(host), 30, "connected")
    set_clock(host, "+20s")
    time.sleep(12)  # two heartbeats
    assert connected(host)
    set_clock(host, "-20s")
    time.sleep(12)
    assert connected(host)
    set_clock(host, "+0")


@pytest.mark.parametrize("offset", ["+1d", "-1d"])
def test_a_day_off_is_reported_and_recovered_from(host: Host, offset: str) -> None:
    wait_for(lambda: connected(host), 30, "connected")
    set_clock(host, offset)
    wait_for(lambda: says_clock(host), 60, f"show to name the clock ({offset})")
    set_clock(host, "+0")
    back = wait_for(lambda: connected(host), 45, "the agent back once the clock is right")
    print(f"\nchaos: clock {offset}: reported, back {back:.0f} s after it was set right")
