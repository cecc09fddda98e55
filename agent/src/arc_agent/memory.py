"""Memory the C library holds after it was freed, given back to the system.

A Python service allocates most while it starts (importing, compiling, reading its state) and
little afterwards; glibc keeps what was freed for later allocations, so a resident service's
memory stays at its start-up peak although it does not use it (about 1 MiB of himds's,
``benchmarks/agent_footprint.py``). ``malloc_trim(0)`` hands the free pages back. Where there is
no glibc (musl), nothing happens.
"""

from __future__ import annotations

import ctypes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_LOOKED_UP: list[Callable[[int], int] | None] = []
"""glibc's ``malloc_trim`` (or None where there is none), once looked up."""


def release_free_memory() -> None:
    """Give the pages malloc holds free back to the system (a millisecond or less)."""
    if not _LOOKED_UP:
        try:
            _LOOKED_UP.append(ctypes.CDLL(None).malloc_trim)  # the C library the interpreter has
        except (OSError, AttributeError):
            _LOOKED_UP.append(None)
    trim = _LOOKED_UP[0]
    if trim is not None:
        trim(0)
