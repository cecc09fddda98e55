"""Open implementation of the Azure Connected Machine agent for the hybridops.arc collection."""

from __future__ import annotations

__version__ = "1.64.3414.2961"
