"""Engines and sessions for SQLite (default, WAL) and PostgreSQL (``postgresql+psycopg://``)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.fsutil import PRIVATE_FILE_MODE

SUPPORTED_SCHEMES = ("sqlite", "postgresql+psycopg")


def validate_database_url(url: str) -> str:
    """The URL if it names a supported database, else a ControlPlaneError naming the fix."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ControlPlaneError(
            f"{url!r} is not a database URL; use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        ) from None
    if parsed.drivername not in SUPPORTED_SCHEMES:
        raise ControlPlaneError(
            f"database {parsed.drivername!r} is not supported; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        )
    return url


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is durable across process crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _private_sqlite_files(database: Path) -> None:
    """The database file and its WAL and shared-memory files readable by this user only,
    whatever the mode of the directory they are in (SQLite gives the WAL files the mode of the
    database file): created 0600, or narrowed to 0600 when an older version left them 0644."""
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE))
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(path.stat().st_mode) & ~PRIVATE_FILE_MODE:
                os.chmod(path, PRIVATE_FILE_MODE)


def make_engine(url: str) -> Engine:
    validate_database_url(url)
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        if parsed.database:
            _private_sqlite_files(Path(parsed.database))
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    """An engine and its session factory; one per server process, passed down."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Database:
        return cls(make_engine(url))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits at the end of the block, or rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
