"""tests/agent: the agent runtime on real test hosts; the lab lives in tests/hosts/lab.py."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "hosts"))
