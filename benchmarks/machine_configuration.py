#!/usr/bin/env python3
"""Machine configuration on a real test host: the SSH baseline's evaluation, and gcad's footprint.

    benchmarks/machine_configuration.py [--rounds 10] [--idle-seconds 120] [--timer-interval 70]

Brings up one test host and the control plane, installs the runtime with the role, connects the
host, publishes the shipped SshHardening package (`make configurations`) and measures:

- per evaluation of SshHardening in ApplyAndAutoCorrect (the first applies it; then, each round,
  a line of sshd_config is changed by hand and the evaluation corrects it): the evaluation's own
  time (its report's endTime - startTime) and the time from the assignment (or the change) to
  the report in the control plane (gcad runs every 2 s here, GCAD_EVALUATION_INTERVAL_SECONDS);
- gcad's peak resident memory over those evaluations (VmHWM);
- gcad started on demand (docs/architecture.md): with the assignment kept and an interval longer
  than gcad waits for (``--timer-interval``), gcad ends after each evaluation and the timer it
  arms starts it for the next; over three intervals: the evaluations, the CPU of each wake
  (``azure.slice``, where gcad runs whenever it runs) and what that averages to at the real
  interval (15 minutes), and whether gcad ran between them;
- idle, after the assignment is removed: PSS of gcad (0 when it has ended) and of himds, and
  their CPU over ``--idle-seconds`` (himds's cgroup, ``azure.slice`` for gcad), as a share of
  one core.

Prints one JSON object. Budgets (DESIGN.md): all agent services together <= 30 MB PSS and
<= 0.01 % of one core idle (benchmarks/agent_footprint.py measures them together).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time

from arc_lab import TOP, Lab

GC_API = "2024-04-05"
SAMPLE = r"""
import json, os, subprocess
out = {}
for name, unit in (("gcad", "gcad.service"), ("himds", "himdsd.service")):
    def show(prop):
        argv = ["systemctl", "show", "-p", prop, "--value", unit]
        done = subprocess.run(argv, capture_output=True, text=True)
        return done.stdout.strip()
    pid = show("MainPID")
    pss = hwm = 0
    if pid and pid != "0":
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    # gcad's time in azure.slice: it stays when gcad ends (a start on demand is counted)
    cgroup = show("ControlGroup") if name == "himds" else "/azure.slice"
    usec = 0
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            usec = int(dict(line.split() for line in open(f"{root}{cgroup}/cpu.stat"))["usage_usec"])
            break
        except OSError:
            continue
    out[name] = {"pid": pid, "pss_bytes": pss, "hwm_bytes": hwm, "cpu_usec": usec}
print(json.dumps(out))
"""
DROP_IN_DIR = "/etc/systemd/system/gcad.service.d"
DROP_IN = "[Service]\nEnvironment=GCAD_EVALUATION_INTERVAL_SECONDS=2\n"
GCAD_LOG = "/var/lib/GuestConfig/arc_policy_logs/gc_agent.log"
SETTLED = r"""
import subprocess, sys, time
# gcad and extd (woken too when the machine's generation changes) have ended
deadline = time.monotonic() + float(sys.argv[1])
show = ["systemctl", "show", "-p", "ActiveState", "--value", "gcad.service", "extd.service"]
while subprocess.run(show, capture_output=True, text=True).stdout.split() != ["inactive", "inactive"]:
    if time.monotonic() > deadline:
        raise SystemExit("gcad and extd did not end")
    time.sleep(0.2)
"""
KEEP_ROOT = [
    {"name": "[nxFileLine]PermitRootLogin;ContainsLine", "value": "PermitRootLogin prohibit-password"},
    {
        "name": "[nxFileLine]PermitRootLogin;DoesNotContainPattern",
        "value": r"^\s*PermitRootLogin\s+(?!prohibit-password\s*$)",
    },
]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max": round(ordered[-1], 3),
    }


def seconds(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="evaluations that correct a change by hand")
    parser.add_argument("--idle-seconds", type=float, default=120, help="idle window for the CPU figure")
    parser.add_argument(
        "--timer-interval", type=int, default=70, help="evaluation interval of the on-demand phase (> 60 s)"
    )
    args = parser.parse_args()

    lab = Lab.start(1)
    try:
        host = lab.hosts[0]
        lab.connect(host, "mc-bench")
        lab.env.controlplane_cli(
            "configuration", "publish", str(TOP / "build/configurations/SshHardening.zip"), *lab.database
        )
        host.sh("cp -p /etc/ssh/sshd_config /root/sshd_config.before")
        host.sh(
            "mkdir -p /etc/systemd/system/gcad.service.d && cat > /etc/systemd/system/gcad.service.d/b.conf",
            stdin=DROP_IN,
        )
        host.sh("systemctl daemon-reload && systemctl restart gcad.service")
        path = (
            "/providers/Microsoft.HybridCompute/machines/mc-bench/providers/Microsoft.GuestConfiguration"
            "/guestConfigurationAssignments/SshHardening"
        )
        wanted = {
            "name": "SshHardening",
            "assignmentType": "ApplyAndAutoCorrect",
            "configurationParameter": KEEP_ROOT,
        }
        body = {"properties": {"guestConfiguration": wanted}}
        evaluations: list[float] = []
        to_report: list[float] = []
        last = ""
        for round_ in range(args.rounds + 1):
            started = time.monotonic()
            if round_ == 0:
                status, _ = lab.plane.arm("PUT", f"{path}?api-version={GC_API}", body)
                assert status == 201, status
            else:
                host.sh("echo 'X11Forwarding yes' >> /etc/ssh/sshd_config")
            while True:
                props = lab.plane.arm("GET", f"{path}?api-version={GC_API}")[1]["properties"]
                report = props.get("latestAssignmentReport") or {}
                fixed = "X11Forwarding yes" not in host.sh("cat /etc/ssh/sshd_config").stdout
                if report.get("id", "") != last and props["complianceStatus"] == "Compliant" and fixed:
                    break
                if time.monotonic() - started > 60:
                    raise SystemExit(
                        f"round {round_}: no Compliant report within 60 s ({props['complianceStatus']})"
                    )
                time.sleep(0.1)
            to_report.append(time.monotonic() - started)
            evaluations.append((seconds(report["endTime"]) - seconds(report["startTime"])).total_seconds())
            last = report["id"]
        busy = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        # On demand: an interval gcad does not wait for; it ends between evaluations.
        host.sh(
            f"cat > {DROP_IN_DIR}/b.conf && systemctl daemon-reload && systemctl restart gcad.service",
            stdin=f"[Service]\nEnvironment=GCAD_EVALUATION_INTERVAL_SECONDS={args.timer_interval}\n",
        )
        host.sh("python3 - 90", stdin=SETTLED)
        timer_before = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        counted = f"grep -c 'SshHardening (Consistency)' {GCAD_LOG} || true"
        evaluated_before = int(host.sh(counted).stdout.strip() or 0)
        runs, window_started = 0, time.monotonic()
        was_active = False
        while time.monotonic() - window_started < 3 * args.timer_interval + 5:
            state = host.sh("systemctl show -p ActiveState --value gcad.service").stdout.strip()
            runs += state == "active" and not was_active
            was_active = state == "active"
            time.sleep(0.5)
        host.sh("python3 - 90", stdin=SETTLED)
        timer_after = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        evaluated = int(host.sh(counted).stdout.strip() or 0) - evaluated_before
        timers = host.sh("systemctl list-timers --all --no-legend gcad.timer").stdout.strip()
        lab.plane.arm("DELETE", f"{path}?api-version={GC_API}")
        host.sh(f"rm -rf {DROP_IN_DIR} && systemctl daemon-reload && systemctl restart gcad.service")
        host.sh("cp -p /root/sshd_config.before /etc/ssh/sshd_config")
        time.sleep(2)  # the removal's generation reaches himds, which wakes gcad and extd
        host.sh("python3 - 90", stdin=SETTLED)
        time.sleep(5)
        before = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        since = host.sh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
        time.sleep(args.idle_seconds)
        after = json.loads(host.sh("python3 -", stdin=SAMPLE).stdout)
        started = host.sh(
            f"journalctl -u gcad -u extd --since '{since}' --no-pager -o cat | grep -c '^Started'",
            check=False,
        )
    finally:
        lab.stop()
    cpu_timer = (timer_after["gcad"]["cpu_usec"] - timer_before["gcad"]["cpu_usec"]) / 1e6
    per_wake = cpu_timer / max(evaluated, 1)
    idle = {
        name: {
            "pss_mib": round(after[name]["pss_bytes"] / 2**20, 1),
            "idle_cpu_percent_of_one_core": round(
                100 * (after[name]["cpu_usec"] - before[name]["cpu_usec"]) / 1e6 / args.idle_seconds, 4
            ),
        }
        for name in ("gcad", "himds")
    }
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "evaluation_seconds": percentiles(evaluations[1:]),
                "first_evaluation_seconds": round(evaluations[0], 3),
                "change_to_compliant_report_seconds": percentiles(to_report[1:]),
                "assignment_to_compliant_report_seconds": round(to_report[0], 3),
                "gcad_peak_rss_mib": round(busy["gcad"]["hwm_bytes"] / 2**20, 1),
                "on_demand": {
                    "interval_s": args.timer_interval,
                    "evaluations": evaluated,
                    "gcad_starts_seen": runs,
                    "cpu_s_per_evaluation_wake": round(per_wake, 3),
                    "percent_of_one_core_at_15_minutes": round(100 * per_wake / 900, 4),
                    "gcad_pss_mib_between": round(timer_after["gcad"]["pss_bytes"] / 2**20, 1),
                    "timer_armed": bool(timers),
                },
                "idle_seconds": args.idle_seconds,
                "idle": idle,
                "starts_in_idle_window": int(started.stdout.strip() or 0),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
