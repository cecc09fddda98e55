"""Runs the module integration targets (tests/integration/targets/*) on a real lab.

    tests/integration/run.py [TARGET ...]        (make integration; ARC_TESTHOSTS_LAB picks the lab)

Starts the lab (``arc_lab``): two test hosts, the control plane, an onboarding and an
administrator service principal. The agent runtime is installed on h1 only, so that h2 is a real
host without the agent (agent_info's case). A second resource group is made for the mismatch and
reconnect cases, and the extensions and machine configuration packages shipped with the repository
are published (the extension target's CustomScript, the machine_configuration target's
SshHardening). The agent built as another version is served over HTTP from the lab's
controller side (the agent_upgrade target's ``source: url``). The control plane's URL, the CA's
path on the hosts, the ids and the credentials go into a 0600 vars file; each target then runs
with ansible-playbook (a small playbook on h1 that includes the target's tasks/main.yml) against
the lab's inventory. Exits non-zero when any target fails; the lab is torn down in every case.

ansible-test integration is not used: it would need an inventory of its own for hosts it does
not manage (docs/development.md).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from arc_lab import CA_ON_HOSTS, TESTHOSTS, TOP, Lab
from arc_lab.bundles import alt_bundle

TARGETS_DIR = TOP / "tests" / "integration" / "targets"
OTHER_GROUP = "arc-servers-2"
ALT_VERSION = "1.65.3500.100"
PLAYBOOK = """---
- name: Integration target {target}
  hosts: h1
  gather_facts: false
  tasks:
    - name: Run the target's tasks
      ansible.builtin.include_tasks: {tasks}
"""


def ansible_env() -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build" / "collections"),
        "ANSIBLE_FORCE_COLOR": "false",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "ANSIBLE_DIFF_ALWAYS": "false",
    }


def make_resource_group(lab: Lab, name: str) -> None:
    """A second resource group (the mismatch and reconnect cases), made by an Owner."""
    init = lab.plane.init
    scope = f"/subscriptions/{init['subscriptionId']}"
    owner = lab.cli("sp", "create", "--name", "it-owner", "--role", "Owner", "--scope", scope)
    token = lab.plane.token(owner["clientId"], owner["clientSecret"])
    request = urllib.request.Request(
        f"{lab.env.url}/subscriptions/{init['subscriptionId']}/resourcegroups/{name}?api-version=2024-11-01",
        data=json.dumps({"location": init["location"]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="PUT",
    )
    lab.plane.open(request).close()


def serve_bundle(lab: Lab, bundle: pathlib.Path) -> tuple[subprocess.Popen[bytes], str]:
    """An HTTP server for ``bundle`` on the controller side of the lab's network (where the hosts
    reach the control plane); the server and the bundle's URL."""
    host = urllib.parse.urlsplit(lab.env.url).hostname or ""
    port = 8700 + int(os.environ.get("ARC_TESTHOSTS_LAB", "0") or 0)
    server = subprocess.Popen(  # noqa: S603 - the lab's own tool
        [str(TESTHOSTS), "ctl", "python3", "-m", "http.server", str(port), "--bind", host,
         "--directory", str(bundle)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    return server, f"http://{host}:{port}"


def write_vars(path: pathlib.Path, lab: Lab, bundle_url: str) -> None:
    init, onboarding, admin = lab.plane.init, lab.plane.onboarding, lab.plane.admin
    document = {
        "arc_url": lab.env.url,
        "arc_ca": CA_ON_HOSTS,
        "arc_tenant_id": init["tenantId"],
        "arc_subscription_id": init["subscriptionId"],
        "arc_resource_group": init["resourceGroup"],
        "arc_other_resource_group": OTHER_GROUP,
        "arc_location": init["location"],
        "arc_onboarding_id": onboarding["clientId"],
        "arc_onboarding_secret": onboarding["clientSecret"],
        "arc_admin_id": admin["clientId"],
        "arc_admin_secret": admin["clientSecret"],
        "arc_alt_version": ALT_VERSION,
        "arc_alt_bundle_url": bundle_url,
        "arc_bundle": str(TOP / "build" / "wheelhouse"),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f)


def main(argv: list[str]) -> int:
    targets = argv or sorted(p.name for p in TARGETS_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())
    unknown = [t for t in targets if not (TARGETS_DIR / t / "tasks" / "main.yml").is_file()]
    if unknown:
        print(f"run.py: no such target: {', '.join(unknown)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    lab = Lab.start(2, install=False)
    failed: list[str] = []
    server = None
    try:
        env = ansible_env()
        lab.install_runtime(limit="h1")
        make_resource_group(lab, OTHER_GROUP)
        lab.publish_extensions()  # the CustomScript packages `make extensions` built
        lab.publish_configurations()  # SshHardening and RequiredPackagesAndServices (`make configurations`)
        with tempfile.TemporaryDirectory(prefix="arc-integration-") as tmp:
            server, bundle_url = serve_bundle(lab, alt_bundle(pathlib.Path(tmp) / "alt", ALT_VERSION))
            print(f"lab ready in {time.monotonic() - started:.0f} s", flush=True)
            variables = pathlib.Path(tmp) / "vars.json"
            write_vars(variables, lab, bundle_url)
            for target in targets:
                book = pathlib.Path(tmp) / f"{target}.yml"
                tasks = TARGETS_DIR / target / "tasks" / "main.yml"
                book.write_text(PLAYBOOK.format(target=target, tasks=tasks))
                t0 = time.monotonic()
                command = [
                    str(TOP / ".venv/bin/ansible-playbook"),
                    "-i",
                    str(lab.env.state_dir / "inventory.ini"),
                    "-e",
                    f"@{variables}",
                    str(book),
                ]
                result = subprocess.run(command, env=env, check=False)
                outcome = "passed" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
                print(f"target {target}: {outcome} in {time.monotonic() - t0:.0f} s", flush=True)
                if result.returncode != 0:
                    failed.append(target)
    finally:
        if server is not None:  # with what it started in the lab's namespace
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
        Lab.stop()
    if failed:
        print(f"integration: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"integration: {len(targets)} target(s) passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
