"""Two requests racing to create the same resource: the loser gets 409, not a server error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError

from arc_controlplane.errors import ArmError


@contextmanager
def conflict_on_race() -> Iterator[None]:
    """Wrap a transaction whose checks a concurrent one may have overtaken (unique keys)."""
    try:
        yield
    except IntegrityError:
        raise ArmError(
            409,
            "Conflict",
            "Another request changed this resource at the same time; send the request again.",
        ) from None
