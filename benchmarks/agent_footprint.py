#!/usr/bin/env python3
"""The agent's footprint on a real test host, connected to the control plane.

    benchmarks/agent_footprint.py [--idle-seconds 600] [--requests 2000]

Brings up one test host and the control plane (default timing: heartbeat every 5 minutes),
installs the runtime with the role, connects the host, then measures on the host:

- memory: the sum of PSS of every agent process (``/proc/PID/smaps_rollup``);
- CPU while idle over ``--idle-seconds``, as a share of one core: the CPU time of the agent
  services' cgroups (``cpu.stat`` ``usage_usec``: every thread and child process, to the
  microsecond), with the processes' tick counts and the threads' schedstat beside it;
- latency of the local API: ``/metadata/instance``, and a managed identity token request as
  clients make it (challenge, key file, request with the secret) once himds has the token cached.

- the floor a Python service cannot go under: the PSS of a bare interpreter that only imported
  what any service talking TLS to the control plane needs (``ssl``, ``socket``, ``json``,
  ``threading``), started beside the services, so that it shares the interpreter with them as
  one more service would (``floor_pss_mib_per_tls_service``).

Prints one JSON object. Budgets (DESIGN.md): <= 30 MB PSS in all, <= 0.01 % of one core idle,
p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from arc_lab import Lab

SAMPLE = r"""
import json, os
agent = []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        continue
    if exe.startswith("/opt/azcmagent/") or any(b"/opt/azcmagent/bin/" in part for part in cmdline[:2]):
        agent.append(pid)
pss = cpu = 0
threads = {}
cgroups = set()
for pid in agent:
    for line in open(f"/proc/{pid}/cgroup"):
        if line.startswith("0::"):
            cgroups.add(line[3:].strip())
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            pss += int(line.split()[1]) * 1024
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    # schedstat: nanoseconds on a CPU, per thread (the tick counts above are 10 ms coarse)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            threads[tid] = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except OSError:
            pass
# The services' cgroups (cgroup2): every process and thread of the unit, dead ones and
# children (systemctl, key generation) included, to the microsecond.
unit_usec = 0
for cgroup in cgroups:
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            stat = dict(line.split() for line in open(f"{root}{cgroup}/cpu.stat"))
        except OSError:
            continue
        unit_usec += int(stat["usage_usec"])
        break
print(json.dumps({"pids": agent, "pss_bytes": pss, "cpu_s": cpu, "threads_ns": threads,
                  "cgroups": sorted(cgroups), "cgroup_usec": unit_usec}))
"""

FLOOR = r"""
import os, subprocess, sys, time
bare = subprocess.Popen([sys.executable, "-c", "import ssl, socket, json, threading, time; time.sleep(60)"])
time.sleep(3)
pss = sum(int(line.split()[1]) for line in open(f"/proc/{bare.pid}/smaps_rollup") if line.startswith("Pss:"))
bare.kill()
print(pss * 1024)
"""

LATENCY = r"""
import http.client, json, sys, time
count = int(sys.argv[1])
conn = http.client.HTTPConnection("127.0.0.1", 40342)
def get(target, headers):
    conn.request("GET", target, headers={"Metadata": "true", **headers})
    reply = conn.getresponse()
    return reply.status, reply.getheader("WWW-Authenticate"), reply.read()
def percentiles(values):
    values.sort()
    return {"p50_ms": round(values[len(values) // 2] * 1000, 3),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 3)}
instance = "/metadata/instance?api-version=2020-06-01"
token = "/metadata/identity/oauth2/token?api-version=2020-06-01&resource=https://vault.azure.net"
for _ in range(50):
    get(instance, {})
times = []
for _ in range(count):
    start = time.perf_counter()
    status, _, _ = get(instance, {})
    times.append(time.perf_counter() - start)
    assert status == 200, status
result = {"metadata_instance": percentiles(times)}
def token_request():
    status, challenge, _ = get(token, {})
    assert status == 401, status
    secret = open(challenge.split("realm=", 1)[1]).read()
    status, _, body = get(token, {"Authorization": "Basic " + secret})
    assert status == 200, body
token_request()  # the first one fills himds's cache from the control plane
times = []
for _ in range(count // 4):
    start = time.perf_counter()
    token_request()
    times.append(time.perf_counter() - start)
result["cached_token"] = percentiles(times)
print(json.dumps(result))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=600, help="idle window for the CPU figure")
    parser.add_argument("--requests", type=int, default=2000, help="requests per latency figure")
    args = parser.parse_args()

    lab = Lab.start(1)
    try:
        host = lab.hosts[0]
        lab.connect(host, "footprint")
        time.sleep(5)  # the first heartbeat and long-poll after connect
        before = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        time.sleep(args.idle_seconds)
        after = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        latency = json.loads(host.sh(f"python3 - {args.requests}", stdin=LATENCY).stdout)
        floor = int(host.sh("python3 -", stdin=FLOOR).stdout)
        status = host.json("show", "status", "lastHeartbeat")
    finally:
        lab.stop()
    cpu = after["cpu_s"] - before["cpu_s"]
    # Threads alive at both samples; a thread that came and went in between is counted by the
    # tick figure only.
    threads = sum(ns - before["threads_ns"].get(tid, 0) for tid, ns in after["threads_ns"].items()) / 1e9
    # The figure: the services' cgroups when the host has them, else the threads' schedstat.
    cgroup_s = (after["cgroup_usec"] - before["cgroup_usec"]) / 1e6
    precise = cgroup_s if after["cgroup_usec"] else threads
    print(
        json.dumps(
            {
                "agent_processes": len(after["pids"]),
                "pss_mib": round(after["pss_bytes"] / 2**20, 1),
                "floor_pss_mib_per_tls_service": round(floor / 2**20, 1),
                "idle_seconds": args.idle_seconds,
                "idle_cpu_s_ticks": round(cpu, 3),
                "idle_cpu_s_threads": round(threads, 4),
                "idle_cpu_s_cgroups": round(cgroup_s, 4),
                "cgroups": after["cgroups"],
                "idle_cpu_s": round(precise, 4),
                "idle_cpu_percent_of_one_core": round(100 * precise / args.idle_seconds, 4),
                **latency,
                "status": status["status"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
