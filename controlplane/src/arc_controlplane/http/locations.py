"""Azure locations: ARM compares them without case or spaces (``East US`` is ``eastus``)."""

from __future__ import annotations

import re

from arc_controlplane.errors import ArmError

# Region names are letters and digits; hyphens are allowed too, for on-premises names.
_LOCATION = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
LOCATION_RULE = "a region name such as 'westeurope' (letters, digits and '-', at most 64)"


def normalize_location(value: str) -> str | None:
    """``value`` lower-cased without spaces, as ARM stores locations; None if it is not one."""
    normalized = value.replace(" ", "").lower()
    return normalized if _LOCATION.fullmatch(normalized) else None


def check_location(value: str) -> str:
    """The normalized location, or ARM's 400 ``InvalidLocation``."""
    normalized = normalize_location(value)
    if normalized is None:
        shown = value if len(value) <= 64 else value[:64] + "..."
        raise ArmError(400, "InvalidLocation", f"The location '{shown}' is invalid: use {LOCATION_RULE}.")
    return normalized
