# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a playbook's time goes, per task (what ansible.posix's profile_tasks shows, as JSON for
benchmarks/fleet.py --profile): for each task, the wall time from its start to its last host's
result, and the sum and count of its per-host results. Written to the file named by
ARC_TASK_TIMES when the playbook ends."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_times
type: aggregate
short_description: per-task wall and per-host times, as JSON (benchmarks only)
description: Writes per-task timings to the file named by ARC_TASK_TIMES.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, dict[str, float]] = {}
        self.started: dict[tuple[str, str], float] = {}
        self.current = ""

    def v2_playbook_on_task_start(self, task, is_conditional):  # type: ignore[no-untyped-def]
        self.current = task.get_name()
        entry = self.tasks.setdefault(self.current, {"wall_s": 0.0, "host_s": 0.0, "results": 0})
        entry["_start"] = time.monotonic()

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start  # type: ignore[assignment]

    def v2_runner_on_start(self, host, task):  # type: ignore[no-untyped-def]
        self.started[(host.get_name(), task.get_name())] = time.monotonic()

    def _done(self, result) -> None:  # type: ignore[no-untyped-def]
        name = result._task.get_name()
        now = time.monotonic()
        entry = self.tasks.setdefault(name, {"wall_s": 0.0, "host_s": 0.0, "results": 0, "_start": now})
        began = self.started.pop((result._host.get_name(), name), now)
        entry["host_s"] += now - began
        entry["results"] += 1
        entry["wall_s"] = max(entry["wall_s"], now - entry["_start"])

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = _done  # type: ignore[assignment]
    v2_runner_on_unreachable = _done  # type: ignore[assignment]

    def v2_playbook_on_stats(self, stats):  # type: ignore[no-untyped-def]
        path = os.environ.get("ARC_TASK_TIMES")
        if not path:
            return
        rows = [
            {
                "task": name,
                "wall_s": round(t["wall_s"], 2),
                "host_s": round(t["host_s"], 2),
                "results": t["results"],
            }
            for name, t in self.tasks.items()
        ]
        with open(path, "w", encoding="utf-8") as out:
            json.dump(sorted(rows, key=lambda row: -row["wall_s"]), out, indent=1)
