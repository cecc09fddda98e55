#!/usr/bin/env python3
"""Generic resource lists (``GET /subscriptions/{id}/resources``, what ``az resource list`` and
``azure_rm_resource_info`` call) on a subscription of N machines, against a running control plane
over HTTPS, beside the typed list. Prints one JSON object per query: p50 and p99 of the first page
over R rounds, and the time to walk every page of the unfiltered list.

    benchmarks/resource_list.py [--machines 10000] [--rounds 20] [--database-url URL]

A ``$filter`` is evaluated on the control plane in key order, 500 rows a read, until a page is
full (docs/management-api.md, "Generic resources"): a selective filter reads the whole
subscription, which is what the figures for ``tagName``/``name`` show.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from arc_controlplane.db.engine import Database
from arc_controlplane.db.tables import Machine
from arc_controlplane.resource_ids import machine_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli() -> list[str]:
    script = shutil.which("arc-controlplane", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "arc_controlplane"]


def seed(url: str, subscription: str, group: str, tenant: str, count: int) -> None:
    """``count`` machines straight into the database; one in a hundred tagged ``team=blue``."""
    now = dt.datetime.now(dt.UTC)
    database = Database.open(url)
    try:
        with database.session() as session:
            for number in range(count):
                name = f"m-{number:06d}"
                resource_id = machine_id(subscription, group, name)
                session.add(
                    Machine(
                        resource_id=resource_id,
                        resource_id_lower=resource_id.lower(),
                        subscription_id=subscription,
                        resource_group_lower=group.lower(),
                        name=name,
                        name_lower=name,
                        location="westeurope",
                        tags={"team": "blue" if number % 100 == 0 else "green", "n": str(number)},
                        vm_id=str(uuid.uuid4()),
                        tenant_id=tenant,
                        properties={},
                        last_status_change=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
    finally:
        database.dispose()


def get(url: str, token: str, context: ssl.SSLContext) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, context=context, timeout=120) as reply:
        document: dict[str, Any] = json.load(reply)
        return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="arc-bench-list-"))
    data = work / "data"
    url = args.database_url or f"sqlite:///{work / 'controlplane.db'}"
    run = [*cli()]
    init = json.loads(subprocess.run([*run, "init", "--data-dir", str(data), "--database-url", url, "--json"],
                                     check=True, capture_output=True, text=True).stdout)  # fmt: skip
    subscription, group, tenant = init["subscriptionId"], init["resourceGroup"], init["tenantId"]
    reader = json.loads(subprocess.run(
        [*run, "sp", "create", "--data-dir", str(data), "--database-url", url, "--name", "bench-reader",
         "--role", "Reader", "--scope", f"/subscriptions/{subscription}", "--json"],
        check=True, capture_output=True, text=True).stdout)  # fmt: skip
    seed(url, subscription, group, tenant, args.machines)
    port = free_port()
    server = subprocess.Popen(
        [*run, "serve", "--data-dir", str(data), "--database-url", url, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    try:
        context = ssl.create_default_context(cafile=str(data / "pki" / "ca.pem"))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", context=context, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": reader["clientId"],
            "client_secret": reader["clientSecret"], "scope": "https://management.azure.com/.default",
        }).encode()  # fmt: skip
        with urllib.request.urlopen(f"{base}/{tenant}/oauth2/v2.0/token", form, context=context) as reply:
            token = json.load(reply)["access_token"]
        sub = f"{base}/subscriptions/{subscription}"
        queries = {
            "typed list (Machines_ListBySubscription)": f"{sub}/providers/Microsoft.HybridCompute/machines"
            "?api-version=2026-09-01",
            "generic list, no filter": f"{sub}/resources?api-version=2024-11-01",
            "generic list, resourceType (az resource list --resource-type)": f"{sub}/resources?api-version="
            "2024-11-01&$filter=" + urllib.parse.quote("resourceType eq 'Microsoft.HybridCompute/machines'"),
            "generic list, tag on 1 % (az resource list --tag team=blue)": f"{sub}/resources?api-version="
            "2024-11-01&$filter=" + urllib.parse.quote("tagname eq 'team' and tagvalue eq 'blue'"),
            "generic list, one name (az resource list -n)": f"{sub}/resources?api-version=2024-11-01&$filter="
            + urllib.parse.quote(f"name eq 'm-{args.machines // 2:06d}'"),
        }
        for what, query in queries.items():
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                get(query, token, context)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            p50 = round(statistics.median(times), 1)
            print(json.dumps({"machines": args.machines, "query": what, "first_page_p50_ms": p50,
                              "first_page_p99_ms": round(p99, 1)}))  # fmt: skip
        started, pages, seen = time.perf_counter(), 0, 0
        next_url: str | None = queries["generic list, no filter"]
        while next_url:
            page = get(next_url, token, context)
            pages, seen = pages + 1, seen + len(page["value"])
            next_url = page.get("nextLink")
        seconds = round(time.perf_counter() - started, 2)
        walked = {"query": "generic list, every page", "pages": pages, "resources": seen, "seconds": seconds}
        print(json.dumps({"machines": args.machines, **walked}))
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
