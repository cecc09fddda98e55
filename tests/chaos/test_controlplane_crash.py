"""The control plane killed (``kill -9``) while 50 agents heartbeat and an operator writes, on
SQLite and on PostgreSQL (issue 10: "nothing lost, nothing half-done").

Five real hosts run ten agents each: the real ``himds``, as transient systemd units, each with
a state tree of its own (``AZCMAGENT_ROOT``) and its own machine resource. The control plane
heartbeat interval is 30 s. An operator's thread PATCHes the machines' tags in a loop, noting
every write the control plane acknowledged. Then the control plane is killed mid-flight and
started again on the same data; every agent must be Connected again (its own ``show``, a
heartbeat after the restart) within one heartbeat interval, every acknowledged write must be
in the database, and the database's own check must be clean.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from arc_lab import CA_ON_HOSTS, Host, Lab
from databases import Database, database

HOSTS = 5
AGENTS_PER_HOST = 10
INTERVAL = 30


def agents_of(host: Host) -> list[str]:
    return [f"{host.name}-a{i}" for i in range(1, AGENTS_PER_HOST + 1)]


def start_agents(lab: Lab, host: Host) -> None:
    """Connect ten agent trees on ``host`` and run a himds for each."""
    init, onboarding = lab.plane.init, lab.plane.onboarding
    host.put_secret("/root/onboarding.json", {"service-principal-secret": onboarding["clientSecret"]})
    connect = " ".join(
        shlex.quote(part)
        for part in ("azcmagent", "connect", "-s", init["subscriptionId"], "-g", init["resourceGroup"],
                     "-l", init["location"], "-t", init["tenantId"], "-i", onboarding["clientId"],
                     "--config", "/root/onboarding.json", "--control-plane-url", lab.env.url,
                     "--control-plane-ca", CA_ON_HOSTS)
    )  # fmt: skip
    script = f"""set -e
for i in $(seq 1 {AGENTS_PER_HOST}); do
  root=/srv/agents/$i; mkdir -p $root
  AZCMAGENT_ROOT=$root {connect} -n {host.name}-a$i >/dev/null
  systemd-run --quiet --unit=agent-$i -p Restart=always -E AZCMAGENT_ROOT=$root \\
    /opt/azcmagent/bin/himds --port $((41000 + i))
done"""
    host.sh(script, timeout=600)


def agent_views(host: Host) -> dict[str, dict[str, str]]:
    """Each agent's own ``show``, by resource name."""
    script = (
        f"for i in $(seq 1 {AGENTS_PER_HOST}); do AZCMAGENT_ROOT=/srv/agents/$i azcmagent show -j "
        "resourceName status lastHeartbeat agentErrorCode; echo; done"
    )
    views = [json.loads(line) for line in host.sh(script).stdout.splitlines() if line.strip()]
    return {view["resourceName"]: view for view in views}


def heartbeat_time(view: dict[str, str]) -> float:
    seen = view.get("lastHeartbeat") or ""
    return dt.datetime.fromisoformat(seen.replace("Z", "+00:00")).timestamp() if seen else 0.0


def wait_all(lab: Lab, moment: float, seconds: float) -> float:
    """Once every agent is Connected with a heartbeat at or after ``moment``: how long after
    ``moment`` the last agent's first such heartbeat was (the agents' own word, not when we
    looked; a look every couple of seconds sees each agent's first one, at 30 s intervals)."""
    deadline = time.monotonic() + seconds
    first: dict[str, float] = {}
    with ThreadPoolExecutor(len(lab.hosts)) as pool:
        while True:
            views: dict[str, dict[str, str]] = {}
            for found in pool.map(agent_views, lab.hosts):
                views.update(found)
            for name, view in views.items():
                if view["status"] == "Connected" and heartbeat_time(view) >= moment - 1:
                    first.setdefault(name, heartbeat_time(view))
            behind = sorted(set(views) - set(first))
            if len(views) == HOSTS * AGENTS_PER_HOST and not behind:
                return max(first.values()) - moment
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(behind)} agents not back: {behind[:10]} {views[behind[0]]}")
            time.sleep(1)


class Operator(threading.Thread):
    """PATCHes the machines' ``seq`` tag in turn; remembers what the control plane acknowledged."""

    def __init__(self, lab: Lab, names: list[str]) -> None:
        super().__init__(daemon=True)
        self.lab, self.names = lab, names
        self.token = lab.plane.token(lab.plane.admin["clientId"], lab.plane.admin["clientSecret"])
        self.acknowledged: dict[str, int] = {}
        self.attempts = self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        sequence = 0
        while not self.stop.is_set():
            name = self.names[sequence % len(self.names)]
            sequence += 1
            body = json.dumps({"tags": {"seq": str(sequence)}}).encode()
            request = urllib.request.Request(
                self.lab.env.url + self.lab.plane.machine_path(name), data=body, method="PATCH",
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            )  # fmt: skip
            self.attempts += 1
            try:
                with self.lab.plane.open(request, timeout=10) as reply:
                    if reply.status == 200:
                        self.acknowledged[name] = sequence
            except (urllib.error.URLError, OSError, TimeoutError):
                self.failures += 1
                time.sleep(0.2)


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, Database]]:
    with database(request.param) as db:
        lab = Lab.start(HOSTS, "--heartbeat-interval", str(INTERVAL), database_url=db.url)
        try:
            yield lab, db
        finally:
            lab.stop()


def test_killed_under_load_loses_nothing_and_every_agent_is_back_within_an_interval(
    setup: tuple[Lab, Database],
) -> None:
    lab, db = setup
    with ThreadPoolExecutor(len(lab.hosts)) as pool:
        list(pool.map(lambda host: start_agents(lab, host), lab.hosts))
    names = [name for host in lab.hosts for name in agents_of(host)]
    wait_all(lab, time.time() - INTERVAL, 3 * INTERVAL)

    operator = Operator(lab, names)
    operator.start()
    time.sleep(5)
    acknowledged_before = len(operator.acknowledged)
    lab.kill_controlplane()
    time.sleep(5)  # the agents notice, and say so
    down = agent_views(lab.hosts[0])
    assert all(view["status"] == "Disconnected" for view in down.values()), down
    restarted = time.time()
    lab.restart_controlplane()
    back_in = wait_all(lab, restarted, INTERVAL + 15)
    time.sleep(3)
    operator.stop.set()
    operator.join(30)

    assert back_in <= INTERVAL, f"agents took {back_in:.1f} s, more than one interval"
    assert acknowledged_before > 0 and operator.failures > 0, "the operator wrote nothing, or nothing failed"
    token = operator.token
    lost = []
    for name, sequence in operator.acknowledged.items():
        request = urllib.request.Request(lab.env.url + lab.plane.machine_path(name),
                                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        with lab.plane.open(request) as reply:
            stored = int(json.load(reply)["tags"].get("seq", "0"))
        if stored < sequence:
            lost.append(f"{name}: acknowledged {sequence}, stored {stored}")
    assert lost == [], lost
    assert db.integrity() == "ok"
    print(f"\nchaos: {len(names)} agents back {back_in:.1f} s after the restart; {operator.attempts} writes "
          f"tried, {operator.failures} refused while down, none of the acknowledged lost")  # fmt: skip
