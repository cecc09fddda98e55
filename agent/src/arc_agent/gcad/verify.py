"""``python -m arc_agent.gcad.verify``: check a downloaded configuration package in a process of
its own, so that gcad itself never loads the ``cryptography`` package (about 10 MB of every
machine's memory, for a check that runs once per package; docs/machine-configuration.md,
"Its share of the machine"). Reads ``{"path", "expected", "signature", "keys", "name",
"version"}`` as JSON on standard input; exits 0 when the package is the one the control plane
signed, 1 with the reason on standard error otherwise."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from arc_agent.cpclient.packages import PackageRefused, verify_configuration


def main() -> int:
    request = json.load(sys.stdin)
    try:
        verify_configuration(
            Path(request["path"]).read_bytes(),
            request["expected"],
            request["signature"],
            request["keys"],
            name=request["name"],
            version=request["version"],
        )
    except (PackageRefused, OSError, KeyError) as refused:
        sys.stderr.write(f"{refused}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
