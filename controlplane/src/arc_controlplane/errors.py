"""The one exception type for mistakes the user can fix (bad files, ports, directories)."""

from __future__ import annotations


class ControlPlaneError(Exception):
    """A runtime error reported as one line, ``arc-controlplane: error: <message>``, exit 1."""


class UsageError(ControlPlaneError):
    """A command-line usage error (exit 2, like argparse)."""
