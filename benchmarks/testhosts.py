#!/usr/bin/env python3
"""Measure the test hosts: time to boot N hosts until each answers ssh, memory they use, and
teardown time. Prints one JSON object per N.

    benchmarks/testhosts.py            # N = 3 and 50
    benchmarks/testhosts.py 3 10 50

Needs root and the tools of tests/hosts/testhosts.sh; leaves no host running.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

TOP = pathlib.Path(__file__).resolve().parents[1]
TESTHOSTS = str(TOP / "tests/hosts/testhosts.sh")


def used_memory_kib() -> int:
    info = {}
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


def running_hosts() -> int:
    out = subprocess.run([TESTHOSTS, "status"], check=True, capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.endswith(" running"))


def ssh_all(hosts: list[dict[str, str]]) -> float:
    """Run `systemctl is-system-running` on every host at once; return the seconds it took."""
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                "ssh",
                "-i",
                h["key"],
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                f"ProxyCommand={TESTHOSTS} ctl socat - TCP:%h:%p",
                f"root@{h['address']}",
                "systemctl is-system-running --wait",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for h in hosts
    ]
    states = [p.communicate()[0].strip() for p in procs]
    bad = [h["name"] for h, s in zip(hosts, states, strict=True) if s not in ("running", "degraded")]
    if bad:
        raise SystemExit(f"hosts not running systemd: {bad}")
    return time.monotonic() - t0


def measure(n: int) -> dict[str, object]:
    subprocess.run([TESTHOSTS, "down"], check=True, capture_output=True)
    base = used_memory_kib()
    t0 = time.monotonic()
    subprocess.run([TESTHOSTS, "up", str(n)], check=True, capture_output=True)
    up_s = time.monotonic() - t0
    hosts = json.loads(
        subprocess.run([TESTHOSTS, "hosts-json"], check=True, capture_output=True, text=True).stdout
    )
    booted_s = ssh_all(hosts)
    mem_mib = (used_memory_kib() - base) / 1024
    running = running_hosts()
    t1 = time.monotonic()
    subprocess.run([TESTHOSTS, "down"], check=True, capture_output=True)
    return {
        "hosts": n,
        "running_at_once": running,
        "up_until_ssh_s": round(up_s, 2),
        "all_systemd_running_s": round(up_s + booted_s, 2),
        "memory_mib": round(mem_mib),
        "memory_mib_per_host": round(mem_mib / n, 1),
        "teardown_s": round(time.monotonic() - t1, 2),
    }


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [3, 50]
    subprocess.run([TESTHOSTS, "rootfs"], check=True)
    for n in sizes:
        print(json.dumps(measure(n)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
