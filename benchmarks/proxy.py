#!/usr/bin/env python3
"""Onboarding a fleet through an HTTP proxy, and through an Arc gateway, beside onboarding it
directly.

    benchmarks/proxy.py [N]          (default: 20)

Three times, on N fresh bare test hosts each time: ``hybridops.arc.onboard`` (install from the
controller, connect, configure) with the hosts' direct route to the control plane; then with that
route taken away (``testhosts.sh isolate all on``) and the lab's proxy (tinyproxy,
``testhosts.sh proxy start``) as their only way, through ``arc_agent_proxy_url``; then through an
Arc gateway (``arc_agent_gateway_id``: the role starts arcproxy, the agent reads the gateway and
then registers, heartbeats and gets tokens through arcproxy and the lab's gateway service).
Measured the same way as benchmarks/fleet.py (one ping round first, not measured, opens the ssh
connections): the onboarding's wall time, the controller's CPU per host, how many machines are
Connected after it, for the proxy run the tunnels in the proxy's log, for the gateway run how many
machines are linked to the gateway. Prints one JSON object; the ratios ``proxy_vs_direct_wall``
and ``gateway_vs_direct_wall`` have the budget 1.2 (issue 17).
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

GATEWAY = "/providers/Microsoft.HybridCompute/gateways/bench-gw?api-version=2026-07-15"


def onboard(n: int, through_proxy: bool = False, through_gateway: bool = False) -> dict[str, Any]:
    lab = Lab.start(n, install=False)
    try:
        inventory = run(str(TESTHOSTS), "inventory").strip()
        extra_vars: dict[str, Any] = {}
        if through_gateway:
            status, gateway = lab.plane.arm("PUT", GATEWAY, {"location": lab.plane.init["location"]})
            assert status in (200, 201), gateway
            extra_vars["arc_agent_gateway_id"] = gateway["id"]
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
        linked = sum(1 for host in lab.hosts if through_gateway and _linked(lab, host.name))
    finally:
        lab.stop()
    return {"wall_s": round(wall, 1), "controller_cpu_s_per_host": round(cpu / n, 2),
            "connected": connected, "tunnels_in_proxy_log": tunnels, "linked_to_gateway": linked}  # fmt: skip


def _linked(lab: Lab, name: str) -> bool:
    status, settings = lab.plane.arm(
        "GET",
        f"/providers/Microsoft.HybridCompute/machines/{name}/providers/Microsoft.HybridCompute/settings/default"
        "?api-version=2026-07-15",
    )
    return status == 200 and bool(settings["properties"]["gatewayProperties"].get("gatewayResourceId"))


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 20
    direct = onboard(n)
    proxied = onboard(n, through_proxy=True)
    gateway = onboard(n, through_gateway=True)
    print(json.dumps({
        "hosts": n,
        "direct": direct,
        "through_proxy": proxied,
        "through_gateway": gateway,
        "proxy_vs_direct_wall": round(proxied["wall_s"] / direct["wall_s"], 2),
        "gateway_vs_direct_wall": round(gateway["wall_s"] / direct["wall_s"], 2),
    }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
