"""``python -m arc_controlplane`` runs the ``arc-controlplane`` command."""

from __future__ import annotations

import sys

from arc_controlplane.cli import main

if __name__ == "__main__":
    sys.exit(main())
