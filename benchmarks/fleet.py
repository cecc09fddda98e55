#!/usr/bin/env python3
"""Onboarding a fleet with the collection, and what a run with nothing to do costs.

    benchmarks/fleet.py [--profile] [N ...]          (default: 20 50)

For each N: brings up N bare test hosts and the control plane, then measures, from the
controller, with the same forks and ssh settings for every run:

0. one ``ansible -m ping`` round, not measured: it opens the ssh connections (ControlPersist)
   that every later run reuses, so no measured run pays for the ssh handshakes;
1. ``hybridops.arc.onboard`` from scratch (install, connect, configure): wall time and
   controller CPU seconds (user + system of ansible and its workers) per host;
2. three rounds of: one ``ansible -m ping`` round on the N hosts (the reference: the least a
   run can cost), then the same playbook again with nothing to do (it must report
   ``changed=0`` on every host); the medians are compared: the no-op run's wall time and
   controller CPU as a multiple of the ping round's.

With --profile, the onboarding's tasks by wall time (benchmarks/callback_plugins/task_times.py,
what ansible.posix's profile_tasks measures) are added to the JSON: where the time goes.

Prints one JSON object per N. Budgets (DESIGN.md): 50 hosts onboarded in 150 s or less, with 0.8 s
of controller CPU per host or less; the no-op run costs at most 2 × a ping round.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import time
from statistics import median
from typing import Any

from arc_lab import TESTHOSTS, TOP, Lab, run

BIN = TOP / ".venv" / "bin"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, controller CPU seconds and output of one command."""
    cpu, start = children_cpu(), time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall, used = time.monotonic() - start, children_cpu() - cpu
    if done.returncode != 0:
        tail = done.stdout[-4000:] + done.stderr[-2000:]
        raise SystemExit(f"{' '.join(argv[:4])} failed ({done.returncode}):\n{tail}")
    return wall, used, done.stdout


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    hosts: dict[str, dict[str, int]] = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match:
            hosts[match[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match[2])}
    return hosts


def measure(n: int, profile: bool = False) -> dict[str, Any]:
    lab = Lab.start(n, install=False)
    try:
        inventory = run(str(TESTHOSTS), "inventory").strip()
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build/collections"),
            "ANSIBLE_FORKS": str(min(n, 50)),
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            "ANSIBLE_PIPELINING": "true",
            "ANSIBLE_FORCE_COLOR": "false",
        }
        with tempfile.TemporaryDirectory() as tmp:
            times = pathlib.Path(tmp) / "task-times.json"
            if profile:
                env["ANSIBLE_CALLBACK_PLUGINS"] = str(TOP / "benchmarks" / "callback_plugins")
                env["ANSIBLE_CALLBACKS_ENABLED"] = "task_times"
                env["ARC_TASK_TIMES"] = str(times)
            extra = Lab.write_secret_json(pathlib.Path(tmp) / "onboard.json", lab.onboard_vars())
            ping = [str(BIN / "ansible"), "-i", inventory, "testhosts", "-m", "ansible.builtin.ping"]
            playbook = "hybridops.arc.onboard"
            onboard = [str(BIN / "ansible-playbook"), "-i", inventory, playbook, "-e", f"@{extra}"]
            timed(ping, env)
            first = timed(onboard, env)
            tasks = json.loads(times.read_text()) if profile else []
            env.pop("ARC_TASK_TIMES", None)
            pings, noops = [], []
            for _ in range(3):
                pings.append(timed(ping, env))
                noops.append(timed(onboard, env))
        changed = {
            host: counts.get("changed", -1) for noop in noops for host, counts in recap(noop[2]).items()
        }
        connected = sum(1 for host in lab.hosts if lab.plane.status(host.name) == "Connected")
    finally:
        lab.stop()
    ping_wall, ping_cpu = median(p[0] for p in pings), median(p[1] for p in pings)
    noop_wall, noop_cpu = median(r[0] for r in noops), median(r[1] for r in noops)
    return {
        "hosts": n,
        "forks": min(n, 50),
        "connected_after_onboard": connected,
        "onboard_wall_s": round(first[0], 1),
        "onboard_controller_cpu_s_per_host": round(first[1] / n, 2),
        "noop_wall_s": round(noop_wall, 2),
        "noop_wall_s_runs": [round(r[0], 2) for r in noops],
        "noop_controller_cpu_s_per_host": round(noop_cpu / n, 3),
        "noop_changed_hosts": sorted(h for h, c in changed.items() if c != 0),
        "ping_wall_s": round(ping_wall, 2),
        "ping_wall_s_runs": [round(p[0], 2) for p in pings],
        "ping_controller_cpu_s_per_host": round(ping_cpu / n, 3),
        "noop_vs_ping_wall": round(noop_wall / ping_wall, 2),
        "noop_vs_ping_cpu": round(noop_cpu / ping_cpu, 2),
        **({"onboard_tasks_by_wall_s": [t for t in tasks if t["wall_s"] >= 0.5]} if profile else {}),
    }


def main(argv: list[str]) -> int:
    profile = "--profile" in argv
    for n in [int(a) for a in argv if a != "--profile"] or [20, 50]:
        print(json.dumps(measure(n, profile)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
