"""The one writer: answered after commit, group commit, one failing write undone alone."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from daemon.stores import cache
from daemon.stores.database import Database, open_database
from daemon.stores.writer import DatabaseUnavailable, Writer


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Database, Writer]]:
    db = open_database(tmp_path)
    writer = Writer(db)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            yield db, writer
            writer.close()
    finally:
        db.close()


def _put(artist: str) -> object:
    entry = cache.make_entry(
        artist,
        "Album",
        "musicbrainz",
        success=True,
        data=None,
        metadata=None,
        now=1.0,
        failed_ttl_seconds=60.0,
    )
    return lambda conn: cache.put_many(conn, [entry])


def _rows(db: Database) -> int:
    # Another connection, as another program sees the file.
    other = sqlite3.connect(db.path)
    try:
        return int(other.execute("SELECT count(*) FROM api_cache").fetchone()[0])
    finally:
        other.close()


async def test_a_write_is_committed_when_submit_returns(running: tuple[Database, Writer]) -> None:
    db, writer = running
    await writer.submit(_put("A"))  # type: ignore[arg-type]
    assert _rows(db) == 1


async def test_writes_submitted_together_share_commits(running: tuple[Database, Writer]) -> None:
    db, writer = running
    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(writer.submit, _put(f"artist {i}"))
    assert _rows(db) == 200
    assert writer.status.commits < 200


async def test_a_failing_write_is_undone_alone(running: tuple[Database, Writer]) -> None:
    db, writer = running

    def half_then_fail(conn: sqlite3.Connection) -> None:
        _put("partial")(conn)  # type: ignore[operator]
        raise ValueError("bad value")

    results: list[object] = []

    async def attempt(fn: object) -> None:
        try:
            results.append(await writer.submit(fn))  # type: ignore[arg-type]
        except ValueError as err:
            results.append(err)

    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt, _put("before"))
        tg.start_soon(attempt, half_then_fail)
        tg.start_soon(attempt, _put("after"))
    assert sum(isinstance(r, ValueError) for r in results) == 1
    assert _rows(db) == 2
    assert cache.get(db.read_conn, "partial", "Album", "musicbrainz", now=2.0) is None


async def test_after_callbacks_run_after_commit_in_submission_order(
    running: tuple[Database, Writer],
) -> None:
    db, writer = running
    seen: list[tuple[int, int]] = []
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(
                lambda i=i: writer.submit(
                    _put(f"n{i}"), after=lambda _r, i=i: seen.append((i, _rows(db)))
                )  # type: ignore[arg-type, misc]
            )
            await anyio.lowlevel.checkpoint()
    assert [i for i, _ in seen] == list(range(20))
    assert all(rows >= i + 1 for i, rows in seen)


async def test_a_locked_database_fails_the_round_and_recovers(
    running: tuple[Database, Writer],
) -> None:
    db, writer = running
    other = sqlite3.connect(db.path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    db.write_conn.execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(DatabaseUnavailable, match="write lock"):
            await writer.submit(_put("A"))  # type: ignore[arg-type]
        assert writer.status.error is not None
    finally:
        other.execute("ROLLBACK")
        other.close()
    await writer.submit(_put("A"))  # type: ignore[arg-type]
    assert writer.status.error is None and _rows(db) == 1


async def test_nothing_is_accepted_after_close(running: tuple[Database, Writer]) -> None:
    _db, writer = running
    writer.close()
    with pytest.raises(DatabaseUnavailable, match="shutting down"):
        await writer.submit(_put("A"))  # type: ignore[arg-type]


async def test_the_writer_asks_for_the_write_connection_each_round(
    running: tuple[Database, Writer],
) -> None:
    # A deleted WAL is renewed with new connections: the writer's next round uses the new one.
    db, writer = running
    await writer.submit(_put("A"))  # type: ignore[arg-type]
    first = db.write_conn
    (db.path.parent / (db.path.name + "-wal")).unlink()
    old_reader = await writer.submit(lambda conn: db.renew_wal(), transaction=False)
    assert old_reader is not None
    old_reader.close()
    assert db.write_conn is not first
    await writer.submit(_put("B"))  # type: ignore[arg-type]
    assert _rows(db) == 2
    assert (db.path.parent / (db.path.name + "-wal")).exists()
