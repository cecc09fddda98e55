"""The state directory's owners, mended by root (issue 10, finding 3), and never a link followed.

Run as root against a relocated tree (``AZCMAGENT_ROOT``); the ``nobody`` account stands in for a
``himds`` that went rogue where the tests' machine has no ``himds`` user. On real hosts
``tests/security`` checks the same with the real ``himds`` account.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import stat
from pathlib import Path

import pytest
from conftest import run_module

from arc_agent.config.statedir import problems, secure
from arc_agent.paths import AgentPaths

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changes owners: needs root")
NOBODY = 65534


def old_layout(root: Path) -> AgentPaths:
    """What an earlier release left, after a rogue service account had its way with it."""
    paths = AgentPaths.under(root)
    paths.state_dir.mkdir(parents=True)
    os.chown(paths.state_dir, NOBODY, NOBODY)
    paths.log_dir.mkdir()
    os.chown(paths.log_dir, NOBODY, NOBODY)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    paths.certs_dir.symlink_to(elsewhere)  # a link where a directory belongs
    (elsewhere / "controlplane-ca.pem").write_text("a CA of the attacker's\n")
    paths.agent_config.write_text('{"controlPlaneUrl": "https://evil.example"}\n')
    os.chown(paths.agent_config, NOBODY, NOBODY)
    return paths


def test_secure_mends_what_an_earlier_layout_and_a_rogue_account_left(tmp_path: Path) -> None:
    paths = old_layout(tmp_path)
    before = problems(paths)
    assert any(str(paths.state_dir) in line for line in before)
    assert any(str(paths.agent_config) in line and "not a file of root's own" in line for line in before)
    changes = secure(paths)
    assert changes and problems(paths) == []
    info = paths.state_dir.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)
    assert stat.S_IMODE(paths.log_dir.stat().st_mode) == 0o1775
    assert paths.certs_dir.is_dir() and not paths.certs_dir.is_symlink()
    assert (tmp_path / "elsewhere" / "controlplane-ca.pem").exists(), "nothing was followed"
    assert not paths.agent_config.exists(), "a connection state root does not own is never used"
    aside = [p for p in paths.state_dir.iterdir() if p.name.startswith("agentconfig.json.untrusted-")]
    assert len(aside) == 1 and aside[0].stat().st_uid == 0
    assert stat.S_IMODE(paths.lock_file.stat().st_mode) == 0o640
    assert secure(paths) == [], "a second run changes nothing"


def test_root_never_writes_its_log_through_a_link(tmp_path: Path) -> None:
    paths = AgentPaths.under(tmp_path)
    env = {**os.environ, "AZCMAGENT_ROOT": str(tmp_path)}
    for argv in (["set", "proxy.url", "http://p:1"], ["get", "proxy.url"]):  # made, then logged to
        assert run_module("arc_agent.cli.main", "config", *argv, env=env).returncode == 0
    target = tmp_path / "etc-shadow-stand-in"
    log = paths.log_dir / "azcmagent.log"
    log.unlink()
    log.symlink_to(target)
    assert run_module("arc_agent.cli.main", "config", "get", "proxy.url", env=env).returncode == 0
    assert not target.exists(), "root created a file at the link's target"
    assert not log.is_symlink() and log.stat().st_uid == 0
    assert "config" in log.read_text()
    fifo = paths.log_dir / "azcmagent.log"
    fifo.unlink()
    os.mkfifo(fifo)  # a reader-less FIFO would block an open for writing
    done = run_module("arc_agent.cli.main", "config", "get", "proxy.url", env=env, timeout=10)
    assert done.returncode == 0
    assert stat.S_ISREG(fifo.lstat().st_mode)


def _secure_after(barrier: multiprocessing.synchronize.Barrier, root: Path) -> None:
    barrier.wait(timeout=30)
    secure(AgentPaths.under(root))


def test_commands_started_together_on_a_new_host_all_make_the_layout(tmp_path: Path) -> None:
    """Every ``azcmagent`` command makes the layout before it takes the state lock; twenty
    started at once on a new host once failed with AZCM0001 ``FileExistsError`` (CI, issue 10's
    concurrency test) because one made a directory another had just found missing."""
    context = multiprocessing.get_context("fork")
    for attempt in range(15):
        root = tmp_path / f"host{attempt}"
        barrier = context.Barrier(8)
        workers = [context.Process(target=_secure_after, args=(barrier, root)) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():  # never left behind, whatever the outcome
                worker.kill()
        assert [worker.exitcode for worker in workers] == [0] * 8
        assert problems(AgentPaths.under(root)) == []
