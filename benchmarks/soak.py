#!/usr/bin/env python3
"""A soak: N simulated agents heartbeat against a running control plane for a long while, with
operators' work mixed in, and the server's memory is watched (issue 10: flat, no error).

    benchmarks/soak.py [--agents 1000] [--rate 1000] [--duration 600] [--postgresql]

The heartbeats are those of benchmarks/heartbeats.py (open loop, TLS keep-alive, the same 2
cores). Mixed in, from a thread of their own: an operator PATCHing a machine's tags every second
with If-Match (reading it first), listing the subscription's machines every 5 s, and a service
principal signing in every 2 s (one in ten with a wrong secret, so the throttle and the audit log
work too). The server's resident memory is sampled every 5 s. Prints one JSON object: the
heartbeats' p50/p99 and errors, the operators' errors, and the memory at the start and the end
of the second half and its slope there (MiB per minute; flat is about 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import heartbeats  # benchmarks/heartbeats.py, beside this file


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    num = sum((t - mean_t) * (m - mean_m) for t, m in points)
    den = sum((t - mean_t) ** 2 for t, _ in points) or 1.0
    return num / den * 60


class Operators(threading.Thread):
    def __init__(self, plane: heartbeats.Plane, owner: dict[str, str], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.plane, self.owner, self.stop = plane, owner, stop
        self.context = ssl.create_default_context(cafile=str(plane.ca))
        self.counts: dict[str, int] = {}

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def call(
        self, method: str, path: str, token: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})}
        request = urllib.request.Request(self.plane.base + path, data=data, headers=sent, method=method)
        with urllib.request.urlopen(request, context=self.context, timeout=30) as reply:
            return reply.headers, json.load(reply)

    def sign_in(self, secret: str) -> str:
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self.owner["clientId"],
                "client_secret": secret,
                "scope": "https://management.azure.com/.default",
            }
        )
        url = f"{self.plane.base}/{self.plane.init['tenantId']}/oauth2/v2.0/token"
        with urllib.request.urlopen(url, data=form.encode(), context=self.context, timeout=30) as reply:
            return str(json.load(reply)["access_token"])

    def run(self) -> None:
        token = self.sign_in(self.owner["clientSecret"])
        sub = f"/subscriptions/{self.plane.init['subscriptionId']}"
        group = f"{sub}/resourceGroups/{self.plane.init['resourceGroup']}/providers/Microsoft.HybridCompute"
        tick = 0
        while not self.stop.wait(1.0):
            tick += 1
            name = f"bench-{tick % len(self.plane.agents):05d}"
            path = f"{group}/machines/{name}?api-version=2026-09-01"
            try:
                headers, _ = self.call("GET", path, token)
                self.call("PATCH", path, token, {"tags": {"tick": str(tick)}}, {"If-Match": headers["ETag"]})
                self.count("patch ok")
                if tick % 5 == 0:
                    self.call(
                        "GET",
                        f"{sub}/providers/Microsoft.HybridCompute/machines?api-version=2026-09-01",
                        token,
                    )
                    self.count("list ok")
                if tick % 2 == 0:
                    wrong = tick % 20 == 0
                    try:
                        self.sign_in("wrong" if wrong else self.owner["clientSecret"])
                        self.count("sign-in ok")
                    except urllib.error.HTTPError as error:
                        self.count(f"sign-in {error.code}" + (" (expected)" if wrong else ""))
            except (urllib.error.URLError, OSError) as error:
                self.count(f"error {getattr(error, 'code', type(error).__name__)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000, help="heartbeats per second")
    parser.add_argument("--duration", type=float, default=600, help="seconds")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgresql", action="store_true", help="a throwaway PostgreSQL instead of SQLite")
    args = parser.parse_args()
    args.database_url = None
    work = Path(tempfile.mkdtemp(prefix="arc-bench-soak-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        if args.postgresql:
            from arc_lab.postgres import PostgresServer

            directory = Path(tempfile.mkdtemp(prefix="arc-soak-pg-"))
            postgres = PostgresServer.start(directory, heartbeats.free_port(), durable=True)
            cleanup.callback(postgres.stop)
            args.database_url = postgres.new_database()
        plane = heartbeats.start_plane(args, work, cleanup)
        owner = json.loads(subprocess.run(
            [*heartbeats.cli(), "sp", "create", "--data-dir", str(plane.data), "--name", "soak-owner",
             "--role", "Owner", "--scope", f"/subscriptions/{plane.init['subscriptionId']}", "--json",
             *(["--database-url", args.database_url] if args.database_url else [])],
            check=True, capture_output=True, text=True,
        ).stdout)  # fmt: skip
        stop = threading.Event()
        memory: list[tuple[float, float]] = []
        started = time.monotonic()

        def sample() -> None:
            while not stop.wait(5.0):
                memory.append((time.monotonic() - started, rss_mib(plane.server.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        operators = Operators(plane, owner, stop)
        sampler.start()
        operators.start()
        results, server_cpu = heartbeats.run_load(args, plane)
        stop.set()
        operators.join(60)
        sampler.join(10)
    latencies = [x for r in results for x in r["latencies"]]
    statuses: dict[str, int] = {}
    for r in results:
        for key, count in r["statuses"].items():
            statuses[key] = statuses.get(key, 0) + count
    second_half = [point for point in memory if point[0] >= args.duration / 2]
    print(json.dumps({
        "database": "postgresql" if args.postgresql else "sqlite",
        "agents": args.agents, "rate": args.rate, "duration_s": args.duration,
        "heartbeats": sum(statuses.values()),
        "heartbeat_errors": sum(statuses.values()) - statuses.get("200", 0),
        "statuses": statuses,
        "p50_ms": round(heartbeats.percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(heartbeats.percentile(latencies, 0.99) * 1000, 1),
        "operators": operators.counts,
        "rss_mib_start": round(memory[0][1], 1) if memory else None,
        "rss_mib_half": round(second_half[0][1], 1) if second_half else None,
        "rss_mib_end": round(memory[-1][1], 1) if memory else None,
        "rss_slope_mib_per_min_second_half": round(slope(second_half), 3),
        "server_cpu_s": round(server_cpu, 1),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
