#!/usr/bin/env python3
"""Onboarding a fleet through an HTTP proxy beside onboarding it directly.

    benchmarks/proxy.py [N]          (default: 20)

Twice, on N fresh bare test hosts each time: ``hybridops.arc.onboard`` (install from the
controller, connect, configure) with the hosts' direct route to the control plane, then with that
route taken away (``testhosts.sh isolate all on``) and the lab's proxy (tinyproxy,
``testhosts.sh proxy start``) as their only way, through ``arc_agent_proxy_url``. Measured the
same way as benchmarks/fleet.py (one ping round first, not measured, opens the ssh connections):
the onboarding's wall time, the controller's CPU per host, how many machines are Connected after
it, and for the proxy run the tunnels in the proxy's log. Prints one JSON object; the ratio
``proxy_vs_direct_wall`` has the budget 1.2 (issue 17).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
from typing import Any

from arc_lab import TESTHOSTS, TOP, Lab, run
from fleet import BIN, timed


def onboard(n: int, through_proxy: bool) -> dict[str, Any]:
    lab = Lab.start(n, install=False)
    try:
        inventory = run(str(TESTHOSTS), "inventory").strip()
        extra_vars: dict[str, Any] = {}
        if through_proxy:
            run(str(TESTHOSTS), "proxy", "start")
            run(str(TESTHOSTS), "isolate", "all", "on")
            extra_vars["arc_agent_proxy_url"] = run(str(TESTHOSTS), "proxy", "url").strip()
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build/collections"),
            "ANSIBLE_FORKS": str(min(n, 50)),
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            "ANSIBLE_PIPELINING": "true",
            "ANSIBLE_FORCE_COLOR": "false",
        }
        with tempfile.TemporaryDirectory() as tmp:
            extra = Lab.write_secret_json(pathlib.Path(tmp) / "onboard.json", lab.onboard_vars(**extra_vars))
            timed([str(BIN / "ansible"), "-i", inventory, "testhosts", "-m", "ansible.builtin.ping"], env)
            playbook = [str(BIN / "ansible-playbook"), "-i", inventory, "hybridops.arc.onboard"]
            wall, cpu, _ = timed([*playbook, "-e", f"@{extra}"], env)
        connected = sum(1 for host in lab.hosts if lab.plane.status(host.name) == "Connected")
        tunnels = run(str(TESTHOSTS), "proxy", "log").count(": CONNECT ") if through_proxy else 0
    finally:
        lab.stop()
    return {"wall_s": round(wall, 1), "controller_cpu_s_per_host": round(cpu / n, 2),
            "connected": connected, "tunnels_in_proxy_log": tunnels}  # fmt: skip


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 20
    direct = onboard(n, through_proxy=False)
    proxied = onboard(n, through_proxy=True)
    print(json.dumps({
        "hosts": n,
        "direct": direct,
        "through_proxy": proxied,
        "proxy_vs_direct_wall": round(proxied["wall_s"] / direct["wall_s"], 2),
    }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
