"""The agent's log files: written, and rotated at their size limit."""

from __future__ import annotations

import logging
from pathlib import Path

from arc_agent.logsetup import RotatingFile


def test_a_full_log_is_rotated_and_old_files_are_shifted(tmp_path: Path) -> None:
    path = tmp_path / "himds.log"
    handler = RotatingFile(path, max_bytes=100, backups=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test-rotation")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for index in range(12):
            logger.warning("line %02d %s", index, "x" * 40)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["himds.log", "himds.log.1", "himds.log.2"]
    for file in tmp_path.iterdir():
        assert file.stat().st_size <= 100 + 50  # a line may cross the limit, never two
    newest = path.read_text().splitlines()
    assert newest[-1].startswith("line 11 ")
    assert "line 00 " not in "".join(p.read_text() for p in tmp_path.iterdir()), "the oldest went"
