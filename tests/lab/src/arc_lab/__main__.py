"""``python -m arc_lab plane --vars FILE [--prefix NAME]``: on hosts that are up (testhosts.sh
up), start the lab's control plane with an onboarding and an administrator principal, and write
the role's variables for it (with ``molecule_admin_id`` and ``molecule_admin_secret``) to FILE,
0600. Molecule's shared prepare uses it, so that molecule, the suites on hosts, the demo and the
benchmarks start the control plane with the same code.

``python -m arc_lab extensions``: publish the extension packages `make extensions` built into
the lab's control plane (which signs them); the molecule scenario ``extensions`` uses it."""

from __future__ import annotations

import argparse
import pathlib
import sys

from arc_lab.environment import LabEnv
from arc_lab.lab import Lab, publish_extensions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arc_lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    plane = commands.add_parser("plane", help="start the control plane on hosts that are up")
    plane.add_argument("--vars", required=True, type=pathlib.Path, help="where to write the variables (0600)")
    plane.add_argument("--prefix", default="lab", help="name prefix of the two service principals")
    commands.add_parser("extensions", help="publish build/extensions into the running control plane")
    args = parser.parse_args(argv)
    env = LabEnv.read()
    if args.command == "extensions":
        for package in publish_extensions(env):
            print(f"published {package['publisher']}.{package['type']} {package['version']}")
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
