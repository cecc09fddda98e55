"""Machine rows as the agent routes read and write them: Core statements, no ORM unit of work.

Agent calls are frequent and small (heartbeats above all), and the ORM's identity map and
flush cost more than the SQL itself. So a call reads the columns it needs with one SELECT into
a *detached* ``Machine`` (never added to a session), changes its attributes with the same code
as elsewhere (``machine_status`` and friends take a ``Machine``), and writes back only the
columns whose values changed, with one UPDATE. As with SQLAlchemy's JSON columns, JSON
attributes (``properties``, ``error_details``, ``tags``) must be replaced, never mutated in
place, for a change to be seen.

The statements are built once per application and reused with bound parameters: SQLAlchemy
then skips recompiling them and re-mapping their result columns on every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, Update, bindparam, inspect, select, update
from sqlalchemy.orm import InstrumentedAttribute

from arc_controlplane.db.tables import Machine

BASE_COLUMNS: tuple[InstrumentedAttribute[Any], ...] = (
    Machine.id,
    Machine.vm_id,
    Machine.name,
    Machine.resource_id,
    Machine.tenant_id,
    Machine.principal_id,
    Machine.connected,
    Machine.public_key_pem,
    Machine.credential_not_after,
    Machine.host_id,
    Machine.agent_version,
    Machine.last_heartbeat,
    Machine.last_status_change,
    Machine.status_reason,
    Machine.error_details,
    Machine.generation,
)
"""What authentication, the status rule and every agent route need."""

_ROW_ID = "row_id"  # the UPDATE's key parameter; not a column name, so it never lands in SET


def machine_query(*extra: InstrumentedAttribute[Any], for_update: bool = False) -> Select[Any]:
    """SELECT ``BASE_COLUMNS`` and ``extra`` of the machine whose vmId is ``:vm_id``.

    ``for_update`` locks the row (PostgreSQL; SQLite serialises writers anyway).
    """
    query = select(*BASE_COLUMNS, *extra).where(Machine.vm_id == bindparam("vm_id"))
    return query.with_for_update() if for_update else query


def machines_query(*extra: InstrumentedAttribute[Any], for_update: bool = False) -> Select[Any]:
    """As ``machine_query``, for the machines whose vmIds are in the list ``:vm_ids``."""
    query = select(*BASE_COLUMNS, *extra).where(Machine.vm_id.in_(bindparam("vm_ids", expanding=True)))
    return query.with_for_update() if for_update else query


def machine_update() -> Update:
    """UPDATE of one machine: the SET clause is made of the columns given at execution."""
    return update(Machine).where(Machine.id == bindparam(_ROW_ID))


@dataclass(frozen=True)
class MachineSnapshot:
    machine: Machine
    """Detached: attributes outside the loaded columns read as None until set."""
    loaded: dict[str, Any]
    """The values as read, to find what changed."""

    @classmethod
    def load(cls, connection: Connection, query: Select[Any], vm_id: str) -> MachineSnapshot | None:
        row = connection.execute(query, {"vm_id": vm_id}).first()
        if row is None:
            return None
        loaded = dict(row._mapping)
        return cls(Machine(**loaded), loaded)

    @classmethod
    def load_many(
        cls, connection: Connection, query: Select[Any], vm_ids: list[str]
    ) -> dict[str, MachineSnapshot]:
        """The machines of ``vm_ids`` that exist, by vmId, read with ``query`` (``machines_query``)."""
        if not vm_ids:
            return {}
        snapshots = {}
        for row in connection.execute(query, {"vm_ids": vm_ids}):
            loaded = dict(row._mapping)
            snapshots[loaded["vm_id"]] = cls(Machine(**loaded), loaded)
        return snapshots

    def changes(self) -> dict[str, Any]:
        """Every column set to a new value: loaded ones that differ, and any other one set."""
        columns = Machine.__table__.c  # attribute names are column names in models.py
        return {
            name: value
            for name, value in inspect(self.machine).dict.items()
            if name in columns and (name not in self.loaded or self.loaded[name] != value)
        }

    def save(self, connection: Connection, statement: Update) -> None:
        """Write the changed columns, if any, with ``statement`` (from ``machine_update()``)."""
        changed = self.changes()
        if changed:
            connection.execute(statement, {_ROW_ID: self.machine.id, **changed})

    @staticmethod
    def save_many(connection: Connection, snapshots: list[MachineSnapshot], statement: Update) -> None:
        """Write the changes of every snapshot: one executemany per set of changed columns."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for snapshot in snapshots:
            changed = snapshot.changes()
            if changed:
                row = {_ROW_ID: snapshot.machine.id, **changed}
                by_columns.setdefault(tuple(sorted(changed)), []).append(row)
        for rows in by_columns.values():
            connection.execute(statement, rows)
