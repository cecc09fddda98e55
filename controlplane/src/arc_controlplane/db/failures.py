"""Failures of the database itself (not of a request): full storage, or a database that cannot
be reached. The HTTP layer answers them as ARM errors with ``Retry-After`` (507 and 503)
instead of a bare 500, and names the cause; what the caller sent was fine and can be sent again.
"""

from __future__ import annotations

import enum
import sqlite3

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

_SQLITE_FULL = {sqlite3.SQLITE_FULL}
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
}
_POSTGRES_FULL = {"53100", "53200"}  # disk_full, out_of_memory (class 53: insufficient resources)
_POSTGRES_UNAVAILABLE_CLASSES = ("08", "57", "53")  # connection exception, operator intervention


class StorageFailure(enum.Enum):
    FULL = "full"
    """No space left for the write (SQLITE_FULL, PostgreSQL disk_full)."""
    UNAVAILABLE = "unavailable"
    """The database cannot be reached or used right now (I/O error, connection lost, restarting)."""


def storage_failure(exc: BaseException) -> StorageFailure | None:
    """What ``exc`` says of the database, or None when it is not a failure of the database."""
    if isinstance(exc, PoolTimeout):
        return StorageFailure.UNAVAILABLE
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary in _SQLITE_FULL or "disk is full" in str(orig):
            return StorageFailure.FULL
        if primary in _SQLITE_UNAVAILABLE:
            return StorageFailure.UNAVAILABLE
        return None
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate in _POSTGRES_FULL:
            return StorageFailure.FULL
        if sqlstate.startswith(_POSTGRES_UNAVAILABLE_CLASSES):
            return StorageFailure.UNAVAILABLE
        return None
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return StorageFailure.UNAVAILABLE  # e.g. psycopg: the server closed the connection
    return None
