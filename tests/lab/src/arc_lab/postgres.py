"""A throwaway PostgreSQL server for the tests, from Debian's ``postgresql`` package.

The cluster lives in a temporary directory, runs as the ``postgres`` user (initdb refuses
root), listens on 127.0.0.1 on a free port with trust authentication, and is stopped at the
end of the session. Each test gets a database of its own.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} was not found: install Debian's postgresql package (make deps does)"
        )
    return found[-1]


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass
class PostgresServer:
    directory: Path
    port: int

    @classmethod
    def start(
        cls, directory: Path, port: int, *, durable: bool = False, wal_dir: Path | None = None
    ) -> PostgresServer:
        """Start a new cluster; ``durable`` keeps PostgreSQL's fsync (benchmarks), tests go without.

        ``wal_dir`` puts the write-ahead log apart from the data files (the full-disk tests fill
        the data files' file system only: PostgreSQL then refuses what needs new space with
        ``disk_full`` and keeps running).
        """
        directory.mkdir(parents=True, exist_ok=True)
        data = directory / "data"
        initdb = [pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        if wal_dir is not None:
            initdb += ["--waldir", str(wal_dir)]
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for owned in (directory, wal_dir.parent if wal_dir is not None else directory):
                os.chown(owned, user.pw_uid, user.pw_gid)
        subprocess.run(_as_postgres(initdb), check=True, capture_output=True)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c max_connections=200"
        if not durable:
            options += " -c fsync=off"
        subprocess.run(
            _as_postgres(
                [
                    pg_bin("pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(directory / "log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        return cls(directory, port)

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([pg_bin("pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.directory, ignore_errors=True)
