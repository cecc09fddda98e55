"""The control plane's files are private whatever the mode of the directory they land in
(issue 10, finding 11: the database was readable by every user when the data directory
already existed with mode 0755)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import controlplane_command, start_server

PRIVATE_FILES = ("controlplane.db", "keys/token-signing.pem", "pki/ca.key", "init.json")
CERTIFICATES = {"pki/ca.pem", "pki/server.pem"}
"""Certificates are public by nature (0644, inside the 0700 directory); keys are not."""


def run_shared_umask(*args: str) -> subprocess.CompletedProcess[str]:
    """``arc-controlplane ARGS`` started with the permissive umask 022 an operator's shell has."""
    return subprocess.run(
        ["/bin/sh", "-c", 'umask 022 && exec "$@"', "sh", *controlplane_command(), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def others_can_read(root: Path) -> list[str]:
    """Every file or directory under ``root`` (itself included) that group or others can access."""
    found = []
    for path in [root, *root.rglob("*")]:
        public = str(path.relative_to(root)) in CERTIFICATES
        if mode(path) & 0o077 and not public:
            found.append(f"{path.relative_to(root.parent)} {oct(mode(path))}")
    return found


def test_init_narrows_a_data_directory_others_can_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    done = run_shared_umask("init", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert "narrowed to mode 0700" in done.stderr
    assert mode(data) == 0o700
    for name in PRIVATE_FILES:
        assert mode(data / name) == 0o600, name
    assert others_can_read(data) == []


def test_files_an_older_version_left_readable_are_narrowed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_shared_umask("init", "--data-dir", str(data)).returncode == 0
    os.chmod(data, 0o755)
    for name in ("controlplane.db", "controlplane.db-wal", "controlplane.db-shm"):
        if (data / name).exists():
            os.chmod(data / name, 0o644)
    server = start_server(data)
    try:
        assert others_can_read(data) == [], "the server left files others can read"
        assert "narrowed to mode 0700" in server.log()
    finally:
        server.stop()


def test_a_database_elsewhere_is_created_private(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    database = shared / "cp.db"
    done = run_shared_umask(
        "init", "--data-dir", str(tmp_path / "data"), "--database-url", f"sqlite:///{database}"
    )
    assert done.returncode == 0, done.stderr
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        if path.exists():
            assert mode(path) == 0o600, path


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another user")
def test_a_data_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chown(data, 65534, 65534)
    done = run_shared_umask("init", "--data-dir", str(data))
    assert done.returncode == 1
    assert "belongs to user id 65534" in done.stderr
    assert list(data.iterdir()) == []
