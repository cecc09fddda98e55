"""The control plane's database for the chaos cases: a SQLite file or a PostgreSQL database,
optionally on a file system the test will fill, and the database's own integrity check."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from arc_lab.environment import free_port
from arc_lab.postgres import PostgresServer, pg_bin


@dataclass
class Database:
    kind: str
    url: str
    sqlite_file: pathlib.Path | None = None
    postgres: PostgresServer | None = None
    name: str = ""

    def integrity(self) -> str:
        """``ok``, or what the check found (SQLite ``integrity_check``; PostgreSQL ``pg_amcheck``)."""
        if self.sqlite_file is not None:
            with sqlite3.connect(self.sqlite_file) as connection:
                return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
        assert self.postgres is not None
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", pg_bin("pg_amcheck"), "-h", str(self.postgres.directory),
             "-p", str(self.postgres.port), "-U", "postgres", "--heapallindexed", "--install-missing",
             self.name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return "ok" if done.returncode == 0 else done.stdout + done.stderr


@contextlib.contextmanager
def database(kind: str, data_on: pathlib.Path | None = None) -> Iterator[Database]:
    """A new database of ``kind`` (``sqlite`` or ``postgresql``), its files on ``data_on`` when
    given (PostgreSQL keeps its write-ahead log elsewhere: a full data disk then refuses writes
    with ``disk_full`` and the server stays up)."""
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="arc-chaos-db-"))
    scratch.chmod(0o755)
    try:
        if kind == "sqlite":
            path = (data_on or scratch) / "controlplane.db"
            yield Database(kind, f"sqlite:///{path}", sqlite_file=path)
            return
        (scratch / "wal").mkdir()
        postgres = PostgresServer.start((data_on or scratch) / "pg", free_port(), durable=True,
                                        wal_dir=scratch / "wal" / "pg_wal")  # fmt: skip
        try:
            name = postgres.new_database().rsplit("/", 1)[1]
            # A unix socket: the control plane runs in the lab's controller network namespace.
            url = f"postgresql+psycopg://postgres@/{name}?host={postgres.directory}&port={postgres.port}"
            yield Database(kind, url, postgres=postgres, name=name)
        finally:
            postgres.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
