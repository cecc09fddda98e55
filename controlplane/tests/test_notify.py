"""The long-poll notifier: wakes waiters of one machine only, from any thread."""

from __future__ import annotations

import asyncio
import threading

from arc_controlplane.machines.notify import Notifier


def test_notify_wakes_only_that_machines_waiters() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        notifier = Notifier()
        woken = asyncio.create_task(notifier.wait("VM-1", 5))
        other = asyncio.create_task(notifier.wait("vm-2", 0.3))
        await asyncio.sleep(0.05)
        assert notifier.waiting() == 2
        threading.Thread(target=notifier.notify, args=("vm-1",)).start()
        return await woken, await other, notifier.waiting()

    woke, other_woke, left = asyncio.run(scenario())
    assert woke is True
    assert other_woke is False
    assert left == 0


def test_notify_without_waiters_is_harmless() -> None:
    Notifier().notify("nobody")
