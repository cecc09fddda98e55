"""``release_free_memory``: what malloc holds free goes back to the system (arc_agent/memory.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = r"""
from arc_agent.memory import release_free_memory

def resident_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

# 60 MiB in blocks malloc serves from its heap (over Python's 512-byte small objects, under
# the mmap threshold), then all freed but the last: the top of the heap stays in use, so glibc
# cannot shrink the heap by itself and keeps the rest.
blocks = [bytes(1000) + bytes([n % 256]) for n in range(60_000)]
kept = blocks[-1]
del blocks
before = resident_kib()
release_free_memory()
release_free_memory()  # looked up once, called again
after = resident_kib()
print(before, after)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim, /proc")
def test_freed_memory_goes_back_to_the_system() -> None:
    before, after = map(
        int,
        subprocess.run(
            [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True
        ).stdout.split(),
    )
    assert before - after > 30 * 1024, (before, after)
