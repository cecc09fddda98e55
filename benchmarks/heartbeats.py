#!/usr/bin/env python3
"""Heartbeats the control plane sustains: N simulated agents, each with its own key, register
through the agent API, then heartbeat at a target rate against a running control plane over
HTTPS. Prints one JSON object: heartbeats per second, p50, p99, errors.

    benchmarks/heartbeats.py [--agents 1000] [--rate 2000] [--duration 20] [--database-url URL]

Open loop: request i is due at start + i / rate whatever happened before it, and its latency is
counted from that moment, so a slow server cannot hide behind a slow client ("coordinated
omission"). The load comes from --clients processes with --connections keep-alive TLS
connections each; they run on the same 2 cores as the server, which the figures include.
Budget (DESIGN.md): >= 2,000 heartbeats/s with SQLite, p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

AGENT_VERSION = "1.64.3414.2961"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli() -> list[str]:
    script = shutil.which("arc-controlplane", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "arc_controlplane"]


def tls_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    return context


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], ctx: ssl.SSLContext) -> dict[str, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    with urllib.request.urlopen(request, context=ctx, timeout=30) as reply:
        result: dict[str, Any] = json.load(reply)
        return result


def onboarding_token(base: str, init: dict[str, Any], ctx: ssl.SSLContext) -> str:
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": init["clientId"],
            "client_secret": init["clientSecret"],
            "scope": "https://management.azure.com/.default",
        }
    ).encode()
    request = urllib.request.Request(f"{base}/{init['tenantId']}/oauth2/v2.0/token", data=form, method="POST")
    with urllib.request.urlopen(request, context=ctx, timeout=30) as reply:
        return str(json.load(reply)["access_token"])


def register(base: str, init: dict[str, Any], token: str, ctx: ssl.SSLContext, index: int) -> dict[str, str]:
    """One agent: a key of its own, registered; returns what its heartbeats need."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    host_id = f"bench-host-{uuid.uuid4().hex}"
    reply = post_json(
        f"{base}/agent/v1/register",
        {
            "subscriptionId": init["subscriptionId"],
            "resourceGroup": init["resourceGroup"],
            "resourceName": f"bench-{index:05d}",
            "location": init["location"],
            "tenantId": init["tenantId"],
            "publicKey": public.decode(),
            "hostId": host_id,
            "agentVersion": AGENT_VERSION,
        },
        {"Authorization": f"Bearer {token}"},
        ctx,
    )
    vm_id = reply["vmId"]
    now = int(time.time())
    # One assertion per agent for the whole run (valid 15 minutes, the longest allowed).
    assertion = jwt.encode(
        {
            "iss": vm_id,
            "sub": vm_id,
            "aud": f"{base}/agent",
            "iat": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
        },
        key,
        algorithm="ES256",
        headers={"kid": vm_id},
    )
    return {"vmId": vm_id, "hostId": host_id, "assertion": assertion}


def request_bytes(host: str, agent: dict[str, str]) -> bytes:
    body = json.dumps({"hostId": agent["hostId"], "agentVersion": AGENT_VERSION}).encode()
    head = (
        f"POST /agent/v1/machines/{agent['vmId']}/heartbeat HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {agent['assertion']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def load(
    port: int, ca: str, requests: list[bytes], rate: float, duration: float, connections: int, start_at: float
) -> dict[str, Any]:
    """Send heartbeats open-loop at ``rate`` for ``duration`` seconds from ``start_at`` (wall clock)."""
    ctx = tls_context(Path(ca))
    total = int(rate * duration)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    origin = loop.time() + (start_at - time.time())

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        try:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                due = origin + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    writer.write(requests[i % len(requests)])
                    status = await read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                    statuses["connection-error"] = statuses.get("connection-error", 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                    continue
                latencies.append(loop.time() - due)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
        finally:
            writer.close()

    began = loop.time()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return {"latencies": latencies, "statuses": statuses, "elapsed": loop.time() - max(began, origin)}


def run_client(args: tuple[int, str, list[bytes], float, float, int, float]) -> dict[str, Any]:
    return asyncio.run(load(*args))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=20)


def measure(
    args: argparse.Namespace, work: Path, cleanup: contextlib.ExitStack
) -> tuple[list[dict[str, Any]], float, float]:
    """Start a control plane, register the agents, run the load; what the clients saw."""
    plane = start_plane(args, work, cleanup)
    results, server_cpu = run_load(args, plane)
    return results, plane.registration_s, server_cpu


class Plane:
    """A running control plane with ``agents`` registered and their heartbeat requests ready."""

    def __init__(
        self, server: subprocess.Popen[bytes], port: int, ca: Path, init: dict[str, Any], data: Path
    ) -> None:
        self.server, self.port, self.ca, self.init, self.data = server, port, ca, init, data
        self.requests: list[bytes] = []
        self.agents: list[dict[str, str]] = []
        self.registration_s = 0.0

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def run_load(args: argparse.Namespace, plane: Plane) -> tuple[list[dict[str, Any]], float]:
    """The open-loop heartbeat load of ``args`` (rate, duration, clients); what the clients saw
    and the server's CPU seconds."""
    share = [plane.requests[i :: args.clients] for i in range(args.clients)]
    start_at = time.time() + 2.0
    cpu_before = cpu_seconds(plane.server.pid)
    rate = args.rate / args.clients
    jobs = [
        (plane.port, str(plane.ca), share[i], rate, args.duration, args.connections, start_at)
        for i in range(args.clients)
    ]
    with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
        results = pool.map(run_client, jobs)
    return results, cpu_seconds(plane.server.pid) - cpu_before


def start_plane(args: argparse.Namespace, work: Path, cleanup: contextlib.ExitStack) -> Plane:
    """A control plane on ``args.database_url`` (or SQLite in ``work``) with ``args.agents``
    agents registered through the agent API."""
    port = free_port()
    db = ["--database-url", args.database_url] if args.database_url else []
    data = work / "data"
    init = json.loads(
        subprocess.run(
            [*cli(), "init", "--data-dir", str(data), *db, "--port", str(port), "--json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    log = cleanup.enter_context((work / "serve.log").open("wb"))
    server = subprocess.Popen(
        [*cli(), "serve", "--data-dir", str(data), *db, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    cleanup.callback(stop, server)
    base = f"https://127.0.0.1:{port}"
    ca = data / "pki" / "ca.pem"
    ctx = tls_context(ca)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", context=ctx, timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit((work / "serve.log").read_text()) from None
            time.sleep(0.1)
    token = onboarding_token(base, init, ctx)
    plane = Plane(server, port, ca, init, data)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        plane.agents = list(pool.map(lambda i: register(base, init, token, ctx, i), range(args.agents)))
    plane.registration_s = time.monotonic() - t0
    plane.requests = [request_bytes(f"127.0.0.1:{port}", agent) for agent in plane.agents]
    return plane


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000, help="target heartbeats per second")
    parser.add_argument("--duration", type=float, default=20, help="seconds of load")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections per client")
    database = parser.add_mutually_exclusive_group()
    database.add_argument("--database-url", help="default: SQLite in a temporary data directory")
    database.add_argument(
        "--postgresql",
        action="store_true",
        help="start a throwaway PostgreSQL server (Debian's postgresql package, defaults kept) and use it",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="arc-bench-hb-"))
    with contextlib.ExitStack() as cleanup:  # undone in reverse: server, database, files
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        if args.postgresql:
            from arc_lab.postgres import PostgresServer  # the tests' throwaway server

            # Its own directory (PostgresServer.start hands it to the postgres user).
            postgres = PostgresServer.start(
                Path(tempfile.mkdtemp(prefix="arc-bench-pg-")), free_port(), durable=True
            )
            cleanup.callback(postgres.stop)
            args.database_url = postgres.new_database()
        results, registration_s, server_cpu = measure(args, work, cleanup)

    latencies = [x for r in results for x in r["latencies"]]
    statuses: dict[str, int] = {}
    for r in results:
        for key, count in r["statuses"].items():
            statuses[key] = statuses.get(key, 0) + count
    ok = statuses.get("200", 0)
    elapsed = max(r["elapsed"] for r in results)
    print(
        json.dumps(
            {
                "database": "postgresql" if args.database_url else "sqlite",
                "agents": args.agents,
                "registration_per_s": round(args.agents / registration_s, 1),
                "target_rate": args.rate,
                "duration_s": args.duration,
                "sent": sum(statuses.values()),
                "ok": ok,
                "errors": sum(statuses.values()) - ok,
                "statuses": statuses,
                "heartbeats_per_s": round(ok / elapsed, 1),
                "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
                "server_cpu_s_per_1000": round(server_cpu / max(ok, 1) * 1000, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
