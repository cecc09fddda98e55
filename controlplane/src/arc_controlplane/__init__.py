"""The hybridops.arc control plane: the service Connected Machine agents connect to."""

from __future__ import annotations

__version__ = "0.1.0"
