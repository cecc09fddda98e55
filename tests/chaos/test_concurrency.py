"""Concurrent writers on one host and one machine (issue 10, finding 5 and the chaos suite):
20 ``azcmagent config set`` at once, 10 playbook runs against one host at once, and two
operators updating one machine with ``If-Match``."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from arc_lab import TESTHOSTS, TOP, Lab, run


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    started = Lab.start(1)
    try:
        yield started
    finally:
        started.stop()


def test_twenty_config_sets_at_once_lose_nothing(lab: Lab) -> None:
    host = lab.hosts[0]
    ports = [str(2000 + n) for n in range(11)]
    keys = {
        "proxy.url": "http://proxy:3128", "proxy.bypass": "ARM", "extensions.blocklist": "Bad/Thing",
        "extensions.enabled": "false", "controlplane.url": "https://cp.example:8443",
        "incomingconnections.enabled": "false",
        "guestconfiguration.agent.cpulimit": "7", "extensions.agent.cpulimit": "9",
        "extensions.allowlist": "Good/Thing",
    }  # fmt: skip
    commands = [f"azcmagent config set incomingconnections.ports {port} --add" for port in ports]
    commands += [f"azcmagent config set {key} {shlex.quote(value)}" for key, value in keys.items()]
    script = " & ".join(
        f"({command} >/dev/null || echo FAILED: {shlex.quote(command)})" for command in commands
    )
    # (connection.type is not among them: gateway mode needs a linked gateway, docs/gateway.md)
    try:
        assert "FAILED" not in host.sh(f"{script}; wait").stdout
        settings = {item["key"]: item["value"] for item in host.json("config", "list")["localsettings"]}
        assert sorted(settings["incomingconnections.ports"]) == ports
        assert settings["proxy.url"] == "http://proxy:3128" and settings["extensions.agent.cpulimit"] == 9
        assert settings["extensions.allowlist"] == ["Good/Thing"]
        assert settings["controlplane.url"] == "https://cp.example:8443"
    finally:  # the next tests connect: no proxy that does not exist left behind
        for key in [*keys, "incomingconnections.ports"]:
            host.sh(f"azcmagent config clear {key}")


def playbooks_at_once(
    lab: Lab, tmp: pathlib.Path, runs: list[dict[str, Any]]
) -> list[subprocess.CompletedProcess[str]]:
    """The onboard playbook, once per entry of ``runs`` (its extra variables), all at once."""
    inventory = run(str(TESTHOSTS), "inventory").strip()
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build/collections"),
        "ANSIBLE_FORCE_COLOR": "0",
    }
    playbook = [str(TOP / ".venv/bin/ansible-playbook"), "-i", inventory, "hybridops.arc.onboard"]

    def one(n: int) -> subprocess.CompletedProcess[str]:
        variables = Lab.write_secret_json(tmp / f"run-{n}.json", lab.onboard_vars(**runs[n]))
        return subprocess.run(
            [*playbook, "-e", f"@{variables}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=False,
        )

    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(one, range(len(runs))))


def test_ten_playbook_runs_against_one_host_at_once(lab: Lab, tmp_path: pathlib.Path) -> None:
    host = lab.hosts[0]
    connect_runs: list[dict[str, Any]] = [{} for _run in range(10)]
    done = playbooks_at_once(lab, tmp_path, connect_runs)
    failed = [result.stdout[-3000:] for result in done if result.returncode != 0]
    assert failed == [], failed[0]
    shown = host.json("show")
    assert shown["status"] == "Connected" and lab.plane.machine(host.name) is not None
    configs = [
        {"arc_agent_config": {"incomingconnections.ports": [str(3000 + n)], "proxy.url": f"http://p:{n + 1}"}}
        for n in range(10)
    ]
    done = playbooks_at_once(lab, tmp_path, configs)
    failed = [result.stdout[-3000:] for result in done if result.returncode != 0]
    assert failed == [], failed[0]
    settings = {item["key"]: item["value"] for item in host.json("config", "list")["localsettings"]}
    assert settings["proxy.url"] in {f"http://p:{n + 1}" for n in range(10)}
    assert len(settings["incomingconnections.ports"]) == 1
    assert host.json("show")["vmId"] == shown["vmId"], "a concurrent run reconnected the machine"
    again = playbooks_at_once(lab, tmp_path, configs[:1] * 2)
    assert all(result.returncode == 0 for result in again), [r.stdout[-3000:] for r in again if r.returncode]
    last = playbooks_at_once(lab, tmp_path, configs[:1])[0]
    assert "changed=0" in last.stdout, last.stdout[-2000:]


def test_two_operators_updating_one_machine_with_if_match(lab: Lab) -> None:
    host = lab.hosts[0]
    token = lab.plane.token(lab.plane.admin["clientId"], lab.plane.admin["clientSecret"])
    url = lab.env.url + lab.plane.machine_path(host.name)
    read = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with lab.plane.open(read) as reply:
        etag = reply.headers["ETag"]
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def operator(value: str) -> None:
        body = json.dumps({"tags": {"owner": value}}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "If-Match": etag}
        barrier.wait()
        try:
            with lab.plane.open(
                urllib.request.Request(url, data=body, headers=headers, method="PATCH")
            ) as reply:
                statuses.append(reply.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)

    threads = [threading.Thread(target=operator, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 412], statuses
