"""``python -m arc_lab plane --vars FILE [--prefix NAME]``: on hosts that are up (testhosts.sh
up), start the lab's control plane with an onboarding and an administrator principal, and write
the role's variables for it (with ``molecule_admin_id`` and ``molecule_admin_secret``) to FILE,
0600. Molecule's shared prepare uses it, so that molecule, the suites on hosts, the demo and the
benchmarks start the control plane with the same code.

``python -m arc_lab extensions``: publish the extension packages `make extensions` built into
the lab's control plane (which signs them); the molecule scenario ``extensions`` uses it.
``python -m arc_lab configurations``: the same for the machine configuration packages `make
configurations` built; ``python -m arc_lab controlplane stop|start``: stop the lab's control plane
(its data kept) and serve it again. The molecule scenario ``machine_configuration`` uses them.

``python -m arc_lab bundle --version V --out DIR [--broken]``: the agent from agent/ as version V,
bundled (a broken copy, whose himds exits at once, with ``--broken``); ``python -m arc_lab
publish-agent DIR``: publish a bundle into the lab's control plane; ``python -m arc_lab arm --vars
FILE METHOD PATH [--body JSON]``: one management API call (PATH under the resource group) as the
administrator FILE names, printing ``{"status": ..., "body": ...}``. The molecule scenario
``upgrade`` uses them."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from arc_lab.bundles import alt_bundle, broken_bundle
from arc_lab.environment import LabEnv
from arc_lab.lab import Lab, publish_configurations, publish_extensions
from arc_lab.plane import ControlPlane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arc_lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    plane = commands.add_parser("plane", help="start the control plane on hosts that are up")
    plane.add_argument("--vars", required=True, type=pathlib.Path, help="where to write the variables (0600)")
    plane.add_argument("--prefix", default="lab", help="name prefix of the two service principals")
    commands.add_parser("extensions", help="publish build/extensions into the running control plane")
    commands.add_parser("configurations", help="publish build/configurations into the running control plane")
    serving = commands.add_parser("controlplane", help="stop the control plane (data kept) or serve it again")
    serving.add_argument("action", choices=["stop", "start"])
    bundle = commands.add_parser("bundle", help="build the agent as another version, as a bundle")
    bundle.add_argument("--version", required=True)
    bundle.add_argument("--out", required=True, type=pathlib.Path)
    bundle.add_argument("--broken", action="store_true", help="its himds exits at once")
    publish = commands.add_parser("publish-agent", help="publish an agent bundle into the control plane")
    publish.add_argument("bundle", type=pathlib.Path)
    arm = commands.add_parser("arm", help="one management API call as the administrator")
    arm.add_argument("--vars", required=True, type=pathlib.Path, help="the variables 'plane' wrote")
    arm.add_argument("method")
    arm.add_argument("path", help="under the resource group, with its query")
    arm.add_argument("--body", type=json.loads)
    args = parser.parse_args(argv)
    if args.command == "bundle":
        if args.broken:
            source = alt_bundle(args.out.with_name(args.out.name + ".src"), args.version)
            broken_bundle(source, args.out)
        else:
            alt_bundle(args.out, args.version)
        print(json.dumps({"bundle": str(args.out), "version": args.version}))
        return 0
    if args.command == "controlplane":
        if args.action == "stop":
            Lab.stop_plane()
        else:
            Lab.serve()
        return 0
    env = LabEnv.read()
    if args.command == "publish-agent":
        print(json.dumps(env.controlplane_cli("agent", "publish", str(args.bundle))))
        return 0
    if args.command == "arm":
        given = json.loads(args.vars.read_text())
        init = {
            "tenantId": given["arc_agent_tenant_id"],
            "subscriptionId": given["arc_agent_subscription_id"],
            "resourceGroup": given["arc_agent_resource_group"],
        }
        admin = {"clientId": given["molecule_admin_id"], "clientSecret": given["molecule_admin_secret"]}
        status, body = ControlPlane(env, init, {}, admin).arm(args.method, args.path, args.body)
        print(json.dumps({"status": status, "body": body}))
        return 0
    if args.command == "extensions":
        for package in publish_extensions(env):
            print(f"published {package['publisher']}.{package['type']} {package['version']}")
        return 0
    if args.command == "configurations":
        for published in publish_configurations(env):
            for package in published["packages"]:
                print(f"published {package['name']} {package['version']}")
        return 0
    control_plane = Lab.start_plane(env, prefix=args.prefix)
    lab = Lab(env, [], control_plane)
    admin = control_plane.admin
    Lab.write_secret_json(
        args.vars,
        lab.onboard_vars(molecule_admin_id=admin["clientId"], molecule_admin_secret=admin["clientSecret"]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
