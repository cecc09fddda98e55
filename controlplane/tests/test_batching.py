"""Batched writes (the heartbeat writer's engine) on both databases: batching, isolation, close."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, insert, select

from arc_controlplane.db.batching import BatchedWrites, WriterClosed
from arc_controlplane.db.engine import Database

METADATA = MetaData()
NOTES = Table("batching_notes", METADATA, Column("id", Integer, primary_key=True), Column("text", String(50)))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url)
    METADATA.create_all(database.engine)
    try:
        yield database
    finally:
        database.dispose()


def notes(db: Database) -> list[str]:
    with db.engine.connect() as connection:
        return sorted(connection.execute(select(NOTES.c.text)).scalars())


class Recorder:
    """Work that writes one row per item and remembers the batches it was given."""

    def __init__(self, fail_on: str = "", hold: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.hold = hold

    def __call__(self, connection: Connection, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if self.hold is not None:
            self.hold.wait(10)
        for item in items:
            connection.execute(insert(NOTES).values(text=item))
            if item == self.fail_on:
                raise ValueError(f"cannot write {item}")
        return [f"wrote {item}" for item in items]


def behind_a_held_batch(
    writer: BatchedWrites[str, str], work: Recorder, first: str, rest: list[str]
) -> list[str | BaseException]:
    """Submit ``first``, and ``rest`` while the writer is held inside ``first``'s transaction."""
    assert work.hold is not None

    async def scenario() -> list[str | BaseException]:
        head = asyncio.ensure_future(writer.run(first))
        while not work.batches:
            await asyncio.sleep(0.01)
        tail = asyncio.ensure_future(submit_all(writer, rest))
        await asyncio.sleep(0.2)
        assert work.hold is not None
        work.hold.set()
        return [await head, *await tail]

    try:
        return asyncio.run(scenario())
    finally:
        writer.close()


async def submit_all(writer: BatchedWrites[str, str], items: list[str]) -> list[str | BaseException]:
    return await asyncio.gather(*(writer.run(item) for item in items), return_exceptions=True)


def test_items_that_arrive_together_share_one_transaction(db: Database) -> None:
    work = Recorder(hold=threading.Event())
    writer: BatchedWrites[str, str] = BatchedWrites(db.engine, work, order_by=str)
    results = behind_a_held_batch(writer, work, "first", [f"item-{i:02d}" for i in range(40)])
    assert results == ["wrote first", *[f"wrote item-{i:02d}" for i in range(40)]]
    assert work.batches[0] == ["first"]
    assert work.batches[1:] == [[f"item-{i:02d}" for i in range(40)]], "the 40 waiting items make one batch"
    assert len(notes(db)) == 41


def test_an_item_whose_work_raises_fails_alone(db: Database) -> None:
    work = Recorder(fail_on="bad", hold=threading.Event())
    writer: BatchedWrites[str, str] = BatchedWrites(db.engine, work, order_by=str)
    results = behind_a_held_batch(writer, work, "a-first", ["c", "bad", "b"])
    assert results[0] == "wrote a-first"
    assert results[1] == "wrote c"
    assert isinstance(results[2], ValueError) and str(results[2]) == "cannot write bad"
    assert results[3] == "wrote b"
    assert work.batches[1] == ["b", "bad", "c"], "a batch is worked in order_by order"
    assert notes(db) == ["a-first", "b", "c"], "the batch was rolled back, then written without 'bad'"


def test_close_writes_what_is_queued_and_refuses_more(db: Database) -> None:
    work = Recorder()
    writer: BatchedWrites[str, str] = BatchedWrites(db.engine, work, order_by=str, threads=2)

    async def scenario() -> list[str | BaseException]:
        return await submit_all(writer, ["x", "y", "z"])

    assert sorted(str(r) for r in asyncio.run(scenario())) == ["wrote x", "wrote y", "wrote z"]
    writer.close()
    writer.close()  # twice is harmless
    with pytest.raises(WriterClosed):
        asyncio.run(writer.run("late"))
    assert notes(db) == ["x", "y", "z"]


def test_a_writer_never_used_closes_without_threads(db: Database) -> None:
    writer: BatchedWrites[str, str] = BatchedWrites(db.engine, Recorder(), order_by=str)
    writer.close()
    assert not any(t.name.startswith("batched-writes") for t in threading.enumerate())


def test_bad_sizes_are_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchedWrites(db.engine, Recorder(), order_by=str, threads=0)
