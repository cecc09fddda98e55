#!/usr/bin/env python3
"""The agent's footprint on a real test host, connected to the control plane.

    benchmarks/agent_footprint.py [--idle-seconds 600] [--requests 2000] [--gateway]

Brings up one test host and the control plane (default timing: heartbeat every 5 minutes),
installs the runtime with the role, connects the host (``--gateway``: through an Arc gateway,
so that arcproxy runs too, docs/gateway.md), then measures on the host:

- memory: the sum of PSS of every agent process (``/proc/PID/smaps_rollup``), once extd and gcad
  (started on demand at connect, docs/architecture.md) have ended: how long that took is printed;
  and each process's PSS and USS (what only it maps: what the machine would get back without it;
  the interpreter's pages and the C libraries are shared, docs/architecture.md, "Footprint");
- CPU while idle over ``--idle-seconds``, as a share of one core: the CPU time of the agent
  services' cgroups (``cpu.stat`` ``usage_usec``: every thread and child process, to the
  microsecond; himds's unit and ``azure.slice``, where extd and gcad run whenever they start, so
  that a service that came and went in the window is counted), with the processes' tick counts
  and the threads' schedstat beside it;
- what a start on demand costs: the CPU of one wake of extd and of gcad with nothing to do
  (``azure.slice``'s time before and after), and how long each ran;
- latency of the local API: ``/metadata/instance``, and a managed identity token request as
  clients make it (challenge, key file, request with the secret) once himds has the token cached.

- the floor a Python service cannot go under: the PSS of a bare interpreter that only imported
  what any service talking TLS to the control plane needs (``ssl``, ``socket``, ``json``,
  ``threading``), started beside the services, so that it shares the interpreter with them as
  one more service would (``floor_pss_mib_per_tls_service``), and what only it maps
  (``floor_uss_mib_per_tls_service``: what one more such process adds).

Prints one JSON object. Budgets (DESIGN.md): <= 30 MB PSS in all, <= 0.01 % of one core idle,
p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from arc_lab import Lab

GATEWAY = "/providers/Microsoft.HybridCompute/gateways/footprint-gw?api-version=2026-07-15"

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
by_process = {}
threads = {}
cgroups = set()
for pid in agent:
    for line in open(f"/proc/{pid}/cgroup"):
        if line.startswith("0::"):
            cgroups.add(line[3:].strip())
    rollup = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in open(f"/proc/{pid}/smaps_rollup")
              if line.split(":")[0] in ("Pss", "Private_Clean", "Private_Dirty")}
    pss += rollup["Pss"]
    name = open(f"/proc/{pid}/comm").read().strip()
    # what the process costs the machine: its PSS, and what only it maps (its USS: what
    # the machine would get back if it ended)
    uss = rollup["Private_Clean"] + rollup["Private_Dirty"]
    by_process[f"{name}[{pid}]"] = {"pss": rollup["Pss"], "uss": uss}
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    # schedstat: nanoseconds on a CPU, per thread (the tick counts above are 10 ms coarse)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            threads[tid] = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except OSError:
            pass
# The services' cgroups (cgroup2): every process and thread of the unit, dead ones and
# children (systemctl, key generation) included, to the microsecond; azure.slice holds extd and
# gcad whenever they run (and keeps their time when they end).
cgroups = {c for c in cgroups if not c.startswith("/azure.slice/")} | {"/azure.slice"}
unit_usec = 0
for cgroup in cgroups:
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            stat = dict(line.split() for line in open(f"{root}{cgroup}/cpu.stat"))
        except OSError:
            continue
        unit_usec += int(stat["usage_usec"])
        break
print(json.dumps({"pids": agent, "pss_bytes": pss, "by_process": by_process, "cpu_s": cpu,
                  "threads_ns": threads, "cgroups": sorted(cgroups), "cgroup_usec": unit_usec}))
"""

FLOOR = r"""
import os, subprocess, sys, time
bare = subprocess.Popen([sys.executable, "-c", "import ssl, socket, json, threading, time; time.sleep(60)"])
time.sleep(3)
rollup = {line.split(":")[0]: int(line.split()[1]) for line in open(f"/proc/{bare.pid}/smaps_rollup")
          if line.split(":")[0] in ("Pss", "Private_Clean", "Private_Dirty")}
bare.kill()
print(rollup["Pss"] * 1024, (rollup["Private_Clean"] + rollup["Private_Dirty"]) * 1024)
"""

SETTLE = r"""
import os, sys, time
# extd and gcad, woken at connect, end when they have nothing to do: until only himds runs.
deadline = time.monotonic() + float(sys.argv[1])
start = time.monotonic()
def running():
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            name = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if exe.startswith("/opt/azcmagent/") or any(b"/opt/azcmagent/bin/" in part for part in cmdline[:2]):
            found.add(name)  # a service's name (arcproxy's resident keeps it after its exec)
    return sorted(found)
while set(running()) - {"himds", "arcproxy"} and time.monotonic() < deadline:
    time.sleep(0.5)
print(round(time.monotonic() - start, 1), " ".join(running()))
"""

WAKE = r"""
import os, subprocess, sys, time
def usec():
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):  # hybrid hierarchy, else cgroup2
        if os.path.exists(f"{root}/azure.slice/cpu.stat"):
            return int(dict(line.split() for line in open(f"{root}/azure.slice/cpu.stat"))["usage_usec"])
    return 0
def show(unit):
    fields = "InvocationID,ActiveState,ExecMainStartTimestampMonotonic,ExecMainExitTimestampMonotonic"
    out = subprocess.run(["systemctl", "show", "-p", fields, unit], capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
service = sys.argv[1]
unit = f"{service}.service"
first = show(unit)["InvocationID"]
before = usec()
start = time.monotonic()
with open(f"/var/opt/azcmagent/wake/{service}", "w") as wake:
    wake.write("benchmarks/agent_footprint.py")
while time.monotonic() - start < 120:
    now = show(unit)
    if now["InvocationID"] != first and now["ActiveState"] in ("inactive", "failed"):
        break
    time.sleep(0.2)
ran = (int(now["ExecMainExitTimestampMonotonic"]) - int(now["ExecMainStartTimestampMonotonic"])) / 1e6
print(round((usec() - before) / 1e6, 3), round(ran, 2))
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
    parser.add_argument(
        "--gateway", action="store_true", help="connect through an Arc gateway (arcproxy runs)"
    )
    args = parser.parse_args()

    lab = Lab.start(1)
    try:
        host = lab.hosts[0]
        extra = []
        if args.gateway:
            status, gateway = lab.plane.arm("PUT", GATEWAY, {"location": lab.plane.init["location"]})
            assert status in (200, 201), gateway
            extra = ["--gateway-id", gateway["id"]]
        lab.connect(host, "footprint", *extra)
        settled_s, left = host.sh("python3 - 180", stdin=SETTLE).stdout.split(" ", 1)
        time.sleep(5)  # the heartbeat interval aside, the machine is idle from here
        before = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        time.sleep(args.idle_seconds)
        after = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        latency = json.loads(host.sh(f"python3 - {args.requests}", stdin=LATENCY).stdout)
        floor, floor_uss = (int(value) for value in host.sh("python3 -", stdin=FLOOR).stdout.split())
        wakes = {}
        for service in ("extd", "gcad"):
            cpu_s, ran_s = host.sh(f"python3 - {service}", stdin=WAKE).stdout.split()
            wakes[service] = {"cpu_s": float(cpu_s), "wall_s": float(ran_s)}
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
                "gateway": args.gateway,
                "agent_processes": len(after["pids"]),
                "on_demand_ended_after_connect_s": float(settled_s),
                "running_when_measured": left.split(),
                "pss_mib": round(after["pss_bytes"] / 2**20, 1),
                "by_process_mib": {
                    name: {kind: round(size / 2**20, 1) for kind, size in sizes.items()}
                    for name, sizes in after["by_process"].items()
                },
                "floor_pss_mib_per_tls_service": round(floor / 2**20, 1),
                "floor_uss_mib_per_tls_service": round(floor_uss / 2**20, 1),
                "idle_seconds": args.idle_seconds,
                "idle_cpu_s_ticks": round(cpu, 3),
                "idle_cpu_s_threads": round(threads, 4),
                "idle_cpu_s_cgroups": round(cgroup_s, 4),
                "cgroups": after["cgroups"],
                "idle_cpu_s": round(precise, 4),
                "idle_cpu_percent_of_one_core": round(100 * precise / args.idle_seconds, 4),
                **latency,
                "one_wake_with_nothing_to_do": wakes,
                "status": status["status"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
