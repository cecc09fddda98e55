"""The lab: real test hosts (tests/hosts/testhosts.sh) with the agent runtime, and the control
plane on their network, for the tests on hosts, the demo and the benchmarks.

Installed into the repository's ``.venv`` by ``make venv`` (``pip install -e tests/lab``), so
everything imports it by name; importing does nothing, ``Lab.start`` does the work.
"""

from __future__ import annotations

from arc_lab.environment import TESTHOSTS, TOP, LabEnv, run
from arc_lab.hosts import Host
from arc_lab.lab import CA_ON_HOSTS, Lab
from arc_lab.plane import ADMIN_ROLE, ONBOARDING_ROLE, ControlPlane

__all__ = [
    "ADMIN_ROLE",
    "CA_ON_HOSTS",
    "ONBOARDING_ROLE",
    "TESTHOSTS",
    "TOP",
    "ControlPlane",
    "Host",
    "Lab",
    "LabEnv",
    "run",
]
