#!/usr/bin/env python3
"""A rolling agent upgrade of a fleet: `azcmagent upgrade` on N connected test hosts, a batch at a
time.

    benchmarks/upgrade.py [--hosts 20] [--batch 5] [--source store|package]

Brings up N bare test hosts and the control plane, onboards them with ``hybridops.arc.onboard``
(not measured), builds the agent as another version (``tools/alt-wheelhouse.sh``) and publishes it
in the control plane's agent package store (``--source store``, the default: each host downloads
it and checks its signature, ``azcmagent upgrade --version``) or copies the package for the
hosts' Python to each (``--source package``: ``azcmagent upgrade --package``). Then, a batch of
hosts at a time (in parallel within the batch), runs on each host the upgrade while a probe on
the host asks himds's ``/agentstatus`` every 20 ms, and measures per host: the longest time
``/agentstatus`` did not answer (the agent's downtime), and the upgrade's own duration (download,
staging, switch, health checks). Prints one JSON object: the rolling upgrade's wall time,
downtime and duration p50/p99/max, and the hosts that failed. Budget (issue 15): downtime
<= 2 s per host (a restart, no reinstall).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from statistics import median
from typing import Any

from arc_lab import TOP, Host, Lab

VERSION = "1.65.3500.100"
PROBE = r"""
import http.client, json, subprocess, sys, time
def answers():
    connection = http.client.HTTPConnection("127.0.0.1", 40342, timeout=0.5)
    try:
        connection.request("GET", "/agentstatus?api-version=2019-08-15", headers={"Metadata": "true"})
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()
start = time.monotonic()
upgrade = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
down_since, longest = None, 0.0
while upgrade.poll() is None or down_since is not None:
    now = time.monotonic()
    if answers():
        if down_since is not None:
            longest, down_since = max(longest, now - down_since), None
    elif down_since is None:
        down_since = now
    if now - start > 300:
        break
    time.sleep(0.02)
output = upgrade.communicate()[0]
print(json.dumps({"rc": upgrade.returncode, "downtime_s": longest, "upgrade_s": time.monotonic() - start,
                  "output": output[-500:]}))
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def upgrade_one(host: Host, upgrade: str, results: dict[str, Any]) -> None:
    command = f"python3 - azcmagent upgrade {upgrade}"
    done = host.sh(command, stdin=PROBE, check=False, timeout=400)
    try:
        results[host.name] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        results[host.name] = {"rc": done.returncode, "output": (done.stdout + done.stderr)[-500:]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--source", choices=["store", "package"], default="store")
    args = parser.parse_args(argv)
    lab = Lab.start(args.hosts, install=False)
    try:
        lab.onboard()
        with tempfile.TemporaryDirectory() as tmp:
            bundle = pathlib.Path(tmp) / "bundle"
            subprocess.run([str(TOP / "tools/alt-wheelhouse.sh"), str(bundle), VERSION], check=True,
                           capture_output=True)  # fmt: skip
            minor = lab.hosts[0].sh("python3 -c 'import sys; print(sys.version_info[1])'").stdout.strip()
            chosen = json.loads((bundle / "targets.json").read_text())["targets"][f"cp3{minor}-x86_64"]
            packages = pathlib.Path(tmp) / "packages"
            packages.mkdir()
            (packages / chosen["archive"]).write_bytes((bundle / chosen["archive"]).read_bytes())
            sha = hashlib.sha256((packages / chosen["archive"]).read_bytes()).hexdigest()
            if args.source == "store":
                lab.publish_agent(bundle)
                upgrade = f"--version {VERSION}"
            else:
                for host in lab.hosts:
                    host.put_tree(packages, "/root/packages")
                upgrade = f"--package /root/packages/{chosen['archive']} --sha256 {sha}"
        results: dict[str, Any] = {}
        wall = time.monotonic()
        for first in range(0, len(lab.hosts), args.batch):
            threads = [
                threading.Thread(target=upgrade_one, args=(host, upgrade, results))
                for host in lab.hosts[first : first + args.batch]
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        wall = time.monotonic() - wall
        good = [entry for entry in results.values() if entry.get("rc") == 0]
        downtime = [entry["downtime_s"] for entry in good]
        duration = [entry["upgrade_s"] for entry in good]
        print(json.dumps({
            "hosts": len(lab.hosts), "batch": args.batch, "source": args.source, "upgraded": len(good),
            "failed": {name: entry for name, entry in results.items() if entry.get("rc") != 0},
            "rolling_wall_s": round(wall, 2),
            "downtime_p50_s": round(median(downtime), 2) if downtime else None,
            "downtime_p99_s": round(percentile(downtime, 0.99), 2) if downtime else None,
            "downtime_max_s": round(max(downtime), 2) if downtime else None,
            "upgrade_p50_s": round(median(duration), 2) if duration else None,
            "upgrade_p99_s": round(percentile(duration, 0.99), 2) if duration else None,
        }), flush=True)  # fmt: skip
    finally:
        Lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
