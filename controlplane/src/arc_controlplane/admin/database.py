"""The database as the admin commands open it: migrated first, errors as one line."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from arc_controlplane.db.engine import Database, validate_database_url
from arc_controlplane.db.migrate import upgrade
from arc_controlplane.errors import ControlPlaneError
from arc_controlplane.settings import ServerSettings


def shown_url(url: str) -> str:
    """The database URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def one_line(exc: BaseException) -> str:
    """A database error's own message (not SQLAlchemy's wrapper), on one line."""
    reason = getattr(exc, "orig", None) or exc
    return " ".join(str(reason).split())


def open_database(settings: ServerSettings, *, create: bool) -> Database:
    """The database of ``settings``, migrated to the newest schema.

    Without ``create``, a missing SQLite file is an error that says to run ``init`` (instead
    of an empty database appearing where the operator mistyped ``--data-dir``).
    """
    url = validate_database_url(settings.effective_database_url())
    parsed = make_url(url)
    sqlite_file = parsed.database if parsed.drivername == "sqlite" else None
    if not create and sqlite_file and not Path(sqlite_file).exists():
        raise ControlPlaneError(
            f"there is no database at {sqlite_file}: run 'arc-controlplane init' first, or give "
            "the --data-dir or --database-url of an initialised control plane"
        )
    db = None
    try:
        db = Database.open(url)
        upgrade(db.engine)
    except (OSError, SQLAlchemyError) as exc:
        if db is not None:
            db.dispose()
        raise ControlPlaneError(f"cannot open the database {shown_url(url)}: {one_line(exc)}") from None
    return db
