"""make demo: the main job on the embedded default.

The control plane up on the controller side of the test network, three bare test hosts up
(Debian, systemd as PID 1, each in its own network namespace), the `hybridops.arc.onboard`
playbook run against them (install the agent, connect, configure), then the machines as the
control plane sees them. Everything stays up to look at; `make test-hosts-down` stops it.

    tools/demo.py [--hosts N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from arc_lab import TESTHOSTS, TOP, Lab, run

BIN = TOP / ".venv" / "bin"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=3, help="how many test hosts (default 3)")
    args = parser.parse_args(argv)

    step(f"Starting the control plane and {args.hosts} bare test hosts")
    lab = Lab.start(args.hosts, install=False)
    onboarding = lab.plane.onboarding
    print(f"control plane: {lab.env.url} (CA {lab.env.ca_file})")
    print(f"onboarding service principal: {onboarding['clientId']} (Azure Connected Machine Onboarding)")

    # The job's variables, as a job template would get them: the secret in a 0600 file only.
    extravars = Lab.write_secret_json(
        lab.env.state_dir / "demo-onboard.json", lab.onboard_vars(arc_agent_tags={"environment": "demo"})
    )
    inventory = run(str(TESTHOSTS), "inventory").strip()
    step("ansible-playbook hybridops.arc.onboard (install, connect, configure)")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build/collections")}
    playbook = [str(BIN / "ansible-playbook"), "-i", inventory, "hybridops.arc.onboard"]
    playbook += ["-e", f"@{extravars}"]
    if subprocess.run(playbook, env=env, check=False).returncode != 0:
        print("\nThe onboard playbook failed (its output is above); the hosts stay up to look at.")
        return 1

    step("The extensions shipped with the repository, published to the control plane's catalogue")
    for package in lab.publish_extensions():
        print(f"{package.get('publisher')}.{package.get('type')} {package.get('version')}")

    step("The machines as the control plane sees them")
    machines = [str(BIN / "arc-controlplane"), "machine", "list", "--data-dir", str(lab.env.data_dir)]
    subprocess.run(machines, check=True)

    first = json.loads(run(str(TESTHOSTS), "hosts-json"))[0]
    proxy = f"ip netns exec {lab.env.ctl_ns} socat - TCP:%h:%p"
    print(
        f"""
Done. Run the playbook again to see it change nothing:
  ANSIBLE_COLLECTIONS_PATH={TOP / "build/collections"} {" ".join(playbook[:-2])} -e @{extravars}
Log in to a host:
  ssh -i {first["key"]} -o ProxyCommand='{proxy}' root@{first["address"]}
  azcmagent show
Stop everything: make test-hosts-down"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
