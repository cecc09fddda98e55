"""The agent killed at random points, and its host rebooted mid-operation (issue 10).

On one real host: ``azcmagent connect``, ``disconnect`` and ``config set`` are killed with
SIGKILL at points spread over their run; himds is killed while connected; the host loses power
in the middle of a connect, and reboots cleanly while connected. After each fault the host must
be in one consistent state, and ``show`` must say which, truthfully: connected (state file,
key, credential, the resource in the control plane, himds heartbeating) or not (none of it
left in use); and the next ordinary command must work from there.

The points are random but reproducible: ``CHAOS_SEED`` (printed) picks them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest
from arc_lab import CA_ON_HOSTS, TESTHOSTS, Host, Lab

SEED = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
STATE = "/var/opt/azcmagent"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    print(f"\nchaos: CHAOS_SEED={SEED}")
    started = Lab.start(1, "--heartbeat-interval", "5")
    host = started.hosts[0]
    admin = started.plane.admin
    host.put_secret(
        "/root/onboarding.json", {"service-principal-secret": started.plane.onboarding["clientSecret"]}
    )
    host.put_secret("/root/admin.json", {"service-principal-id": admin["clientId"],
                                         "service-principal-secret": admin["clientSecret"]})  # fmt: skip
    try:
        yield started
    finally:
        started.stop()


def connect_command(lab: Lab, name: str) -> str:
    init = lab.plane.init
    args = ["azcmagent", "connect", "-s", init["subscriptionId"], "-g", init["resourceGroup"], "-l",
            init["location"], "-n", name, "-t", init["tenantId"], "-i", lab.plane.onboarding["clientId"],
            "--config", "/root/onboarding.json", "--control-plane-url", lab.env.url, "--control-plane-ca",
            CA_ON_HOSTS]  # fmt: skip
    return " ".join(shlex.quote(arg) for arg in args)


DISCONNECT = "azcmagent disconnect -t {tenant} --config /root/admin.json"


def killed_after(host: Host, command: str, seconds: float) -> None:
    """Run ``command`` on ``host`` and SIGKILL it after ``seconds`` (if it is still running)."""
    host.sh(f"timeout -s KILL {seconds:.2f} {command} >/dev/null 2>&1; true", timeout=120)


def timed(host: Host, command: str) -> float:
    started = time.monotonic()
    result = host.sh(command, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return time.monotonic() - started


def since(text: str) -> float:
    return time.time() - dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def consistent(lab: Lab, host: Host, name: str) -> bool:
    """Whether ``host`` is connected as ``name``; fails unless everything agrees with that."""
    deadline = time.monotonic() + 30
    while True:
        shown = host.json("show")
        has_state = host.sh(f"test -f {STATE}/agentconfig.json", check=False).returncode == 0
        resource = lab.plane.machine(name)
        problems = []
        if shown["stateDirectory"] != "as expected":
            problems.append(f"state directory: {shown['stateDirectory']}")
        if has_state:
            keys = host.sh(
                f"test -f {STATE}/certs/identity.key -a -f {STATE}/certs/identity.crt", check=False
            )
            if keys.returncode != 0:
                problems.append("connected without its key or credential")
            if resource is None:
                # Deleted before the local reset: himds must say so, not Connected.
                if shown["status"] != "Disconnected" or not shown["agentErrorCode"]:
                    problems.append(f"resource gone but show says {shown['status']}")
            elif (
                shown["status"] != "Connected"
                or not shown["lastHeartbeat"]
                or since(shown["lastHeartbeat"]) > 15
            ):
                problems.append(f"connected but not heartbeating: {shown['status']} {shown['lastHeartbeat']}")
            elif resource["properties"]["vmId"] != shown["vmId"]:
                problems.append("the resource is another vmId")
        elif shown["status"] != "Disconnected" or shown["resourceId"]:
            problems.append(f"no state but show says {shown['status']} {shown['resourceId']}")
        if not problems:
            return has_state and resource is not None
        if time.monotonic() > deadline:
            raise AssertionError(f"{host.name} inconsistent: {problems}; show: {shown}")
        time.sleep(1)


def settle(lab: Lab, host: Host) -> None:
    """Back to not connected with ordinary commands, from whatever consistent state."""
    if host.sh(f"test -f {STATE}/agentconfig.json", check=False).returncode == 0:
        result = host.sh(DISCONNECT.format(tenant=lab.plane.init["tenantId"]), check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def points(duration: float, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(0.05, duration * 1.1) for _crash in range(count))


def test_connect_killed_at_random_points(lab: Lab) -> None:
    host = lab.hosts[0]
    duration = timed(host, connect_command(lab, "crash-connect"))
    assert consistent(lab, host, "crash-connect")
    settle(lab, host)
    for n, delay in enumerate(points(duration, 6, SEED)):
        killed_after(host, connect_command(lab, "crash-connect"), delay)
        connected = consistent(lab, host, "crash-connect")
        if not connected:  # the ordinary way on: connect again (it takes over a registered resource)
            timed(host, connect_command(lab, "crash-connect"))
            assert consistent(lab, host, "crash-connect"), f"point {n} ({delay:.2f} s)"
        settle(lab, host)
        assert not consistent(lab, host, "crash-connect")


def test_disconnect_killed_at_random_points(lab: Lab) -> None:
    host = lab.hosts[0]
    timed(host, connect_command(lab, "crash-disconnect"))
    duration = timed(host, DISCONNECT.format(tenant=lab.plane.init["tenantId"]))
    for n, delay in enumerate(points(duration, 4, SEED + 1)):
        timed(host, connect_command(lab, "crash-disconnect"))
        killed_after(host, DISCONNECT.format(tenant=lab.plane.init["tenantId"]), delay)
        consistent(lab, host, "crash-disconnect")
        settle(lab, host)  # disconnect again finishes the job, whatever was done
        assert not consistent(lab, host, "crash-disconnect"), f"point {n} ({delay:.2f} s)"
        assert lab.plane.machine("crash-disconnect") is None


def test_config_set_killed_at_random_points_leaves_the_old_value_or_the_new(lab: Lab) -> None:
    host = lab.hosts[0]
    duration = timed(host, "azcmagent config set proxy.url http://proxy:1")
    for n, delay in enumerate(points(duration, 5, SEED + 2)):
        before = host.json("config", "get", "proxy.url")["value"]
        wanted = f"http://proxy:{n + 2}"
        killed_after(host, f"azcmagent config set proxy.url {wanted}", delay)
        after = host.json("config", "get", "proxy.url")["value"]
        assert after in (before, wanted), (before, after, wanted)
        json.loads(host.sh(f"cat {STATE}/localconfig.json").stdout)
    host.sh("azcmagent config clear proxy.url")


def test_himds_killed_while_connected_comes_back_connected(lab: Lab) -> None:
    host = lab.hosts[0]
    timed(host, connect_command(lab, "crash-himds"))
    rng = random.Random(SEED + 3)
    for _round in range(3):
        time.sleep(rng.uniform(0, 3))
        host.sh("systemctl kill -s KILL himdsd.service")
        assert consistent(lab, host, "crash-himds")
    settle(lab, host)


def test_power_cut_in_the_middle_of_a_connect_and_a_clean_reboot(lab: Lab) -> None:
    host = lab.hosts[0]
    index = host.name.removeprefix("h")
    duration = timed(host, connect_command(lab, "crash-power"))
    settle(lab, host)
    delay = points(duration, 1, SEED + 4)[0]
    host.sh(f"setsid nohup {connect_command(lab, 'crash-power')} >/dev/null 2>&1 < /dev/null &")
    time.sleep(delay)
    subprocess.run([str(TESTHOSTS), "reboot", index, "crash"], check=True, capture_output=True)
    if not consistent(lab, host, "crash-power"):
        timed(host, connect_command(lab, "crash-power"))
    assert consistent(lab, host, "crash-power")
    subprocess.run([str(TESTHOSTS), "reboot", index], check=True, capture_output=True)
    assert consistent(lab, host, "crash-power"), "a clean reboot left the machine disconnected"
    settle(lab, host)
