"""The extension service killed at random points (issue 14).

On one real connected host: CustomScript (shipped with the repository) is installed, upgraded
2.1 -> 2.2 and removed through the management API, and ``extd`` is killed with SIGKILL at random
points after each request. systemd starts it again; afterwards the extension must be in one
consistent state that the control plane, ``azcmagent extension list`` and the files agree on:
never "Succeeded" for a handler that is not wholly in place, no half-unpacked folders, no second
version left behind, nothing left after a removal.

The points are random but reproducible: ``CHAOS_SEED`` (printed) picks them.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from arc_lab import Host, Lab

SEED = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
HANDLER = "Microsoft.Azure.Extensions.CustomScript"
LIB = "/var/lib/waagent"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    print(f"\nchaos: CHAOS_SEED={SEED}")
    started = Lab.start(1, "--heartbeat-interval", "5")
    try:
        started.publish_extensions()
        started.connect(started.hosts[0], "crash-extd")
        yield started
    finally:
        started.stop()


def request(lab: Lab, version: str, command: str) -> None:
    body = {
        "location": lab.plane.init["location"],
        "properties": {
            "publisher": "Microsoft.Azure.Extensions", "type": "CustomScript", "typeHandlerVersion": version,
            "autoUpgradeMinorVersion": False, "settings": {"commandToExecute": command},
        },
    }  # fmt: skip
    deadline = time.monotonic() + 60
    while True:  # 409 until extd has registered the machine's extension certificate
        status, answer = lab.plane.arm("PUT", lab.plane.extension_path("crash-extd", "cse"), body)
        if status != 409 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status in (200, 202), answer


def kill_extd_after(host: Host, seconds: float) -> None:
    time.sleep(seconds)
    host.sh("systemctl kill -s KILL --kill-whom=main extd.service")


def consistent(lab: Lab, host: Host, version: str | None) -> dict[str, Any] | None:
    """The extension settled, and the control plane, the agent's records and the files agree
    that CustomScript ``version`` is installed and enabled (None: that it is gone)."""
    extension = lab.plane.settled_extension("crash-extd", "cse", seconds=90)
    # systemd starts the killed extd again after 5 s; it then finishes what it had begun, and ends
    # by itself once it has nothing to do (started on demand): running, or ended cleanly.
    deadline = time.monotonic() + 30
    while host.sh("systemctl show -p ActiveState --value extd", check=False).stdout.strip() not in (
        "active",
        "inactive",
    ):
        assert time.monotonic() < deadline, "extd did not come back"
        time.sleep(0.5)
    folders = host.sh(f"ls -a {LIB} | grep CustomScript || true").stdout.split()
    listed = host.json("extension", "list")["extensions"]
    if version is None:
        assert extension is None
        assert folders == [] and listed == [], listed
        assert host.sh(f"test -e {LIB}/custom-script", check=False).returncode == 1
        return None
    assert extension is not None
    assert extension["properties"]["provisioningState"] == "Succeeded", extension
    assert folders == [f"{HANDLER}-{version}"], f"half-unpacked or left-behind folders: {folders}"
    for part in (
        "HandlerManifest.json",
        "HandlerEnvironment.json",
        "bin/customscript.py",
        "bin/custom-script",
    ):
        assert host.sh(f"test -s {LIB}/{HANDLER}-{version}/{part}", check=False).returncode == 0, part
    assert [(e["version"], e["state"], e["status"]) for e in listed] == [(version, "Enabled", "success")]
    return extension


def points(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(0.0, 2.5) for _crash in range(count))


def test_extd_killed_while_installing_upgrading_and_removing(lab: Lab) -> None:
    host = lab.hosts[0]
    for n, delay in enumerate(points(3, SEED)):
        request(lab, "2.1", f"echo install-{n}")
        kill_extd_after(host, delay)
        consistent(lab, host, "2.1.0")
        assert f"install-{n}" in host.sh(f"cat {LIB}/custom-script/download/*/stdout").stdout, f"point {n}"

        request(lab, "2.2", f"echo upgrade-{n}")
        kill_extd_after(host, delay)
        upgraded = consistent(lab, host, "2.2.0") or {}
        assert upgraded["properties"]["instanceView"]["typeHandlerVersion"].startswith("2.2")

        status, _answer = lab.plane.arm("DELETE", lab.plane.extension_path("crash-extd", "cse"))
        assert status == 202
        kill_extd_after(host, delay)
        consistent(lab, host, None)
