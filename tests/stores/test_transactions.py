"""Transactions as context managers (stores/transactions.py) and the short read connection
(schema.reading, Database.reading)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.stores.database import Database, open_database
from daemon.stores.schema import connect, reading
from daemon.stores.transactions import NestedTransaction, snapshot, transaction


class Cancelled(BaseException):
    """Stands for a cancellation or KeyboardInterrupt: not an Exception."""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path)
    database.write_conn.execute("CREATE TABLE t (x INTEGER)")
    try:
        yield database
    finally:
        database.close()


def _rows(db: Database) -> list[int]:
    return [x for (x,) in db.read_conn.execute("SELECT x FROM t ORDER BY x")]


def test_a_transaction_is_committed_when_the_block_ends(db: Database) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        tx.execute("INSERT INTO t VALUES (2)")
        # Not visible to another connection before the commit.
        assert _rows(db) == []
    assert not db.write_conn.in_transaction
    assert _rows(db) == [1, 2]


def test_a_transaction_is_rolled_back_when_an_exception_leaves_it(db: Database) -> None:
    with pytest.raises(ValueError, match="bad value"), transaction(db.write_conn) as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        raise ValueError("bad value")
    assert not db.write_conn.in_transaction
    assert _rows(db) == []


def test_a_transaction_is_rolled_back_on_a_base_exception_such_as_cancellation(
    db: Database,
) -> None:
    with pytest.raises(Cancelled), transaction(db.write_conn) as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        raise Cancelled
    assert not db.write_conn.in_transaction
    assert _rows(db) == []


def test_a_transaction_takes_the_write_lock_at_once(db: Database) -> None:
    other = connect(db.path)
    other.execute("PRAGMA busy_timeout = 0")
    try:
        with transaction(db.write_conn):
            # IMMEDIATE: a second writer is refused before it writes anything.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()


def test_an_error_after_sqlite_rolled_back_by_itself_propagates_unchanged(db: Database) -> None:
    # Some errors (a full disk, I/O) end the transaction inside SQLite: no second ROLLBACK
    # then, and the error the caller sees is the one that happened.
    with (
        capture_logs() as logs,
        pytest.raises(ValueError, match="first"),
        transaction(db.write_conn) as tx,
    ):
        tx.execute("INSERT INTO t VALUES (1)")
        tx.execute("ROLLBACK")
        raise ValueError("first")
    assert not db.write_conn.in_transaction
    assert _rows(db) == []
    assert logs == []


def test_nested_transactions_are_refused_and_leave_the_outer_one_as_it_was(
    db: Database,
) -> None:
    # Chosen: a transaction opened inside another is a bug; it raises before doing anything,
    # and the outer transaction then rolls back or commits as its own block decides.
    with transaction(db.write_conn) as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(NestedTransaction), transaction(tx):
            pass  # pragma: no cover
        with pytest.raises(NestedTransaction), snapshot(tx):
            pass  # pragma: no cover
        assert tx.in_transaction
    assert _rows(db) == [1]


def test_a_nested_transaction_that_escapes_rolls_the_outer_one_back(db: Database) -> None:
    with pytest.raises(NestedTransaction), transaction(db.write_conn) as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        with transaction(tx):
            pass  # pragma: no cover
    assert not db.write_conn.in_transaction
    assert _rows(db) == []


def test_a_snapshot_sees_one_moment_of_the_database(db: Database) -> None:
    db.write_conn.execute("INSERT INTO t VALUES (1)")
    with snapshot(db.read_conn) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        db.write_conn.execute("INSERT INTO t VALUES (2)")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert not db.read_conn.in_transaction
    assert _rows(db) == [1, 2]


def test_a_snapshot_is_ended_however_the_block_ends(db: Database) -> None:
    for error in (ValueError("bad"), Cancelled()):
        with pytest.raises(type(error)), snapshot(db.read_conn) as conn:
            conn.execute("SELECT count(*) FROM t").fetchone()
            raise error
        assert not db.read_conn.in_transaction


def test_a_snapshot_takes_no_lock_a_writer_waits_for(db: Database) -> None:
    with snapshot(db.read_conn) as conn:
        conn.execute("SELECT count(*) FROM t").fetchone()
        with transaction(db.write_conn) as tx:
            tx.execute("INSERT INTO t VALUES (1)")
    assert _rows(db) == [1]


def test_a_read_connection_is_closed_when_the_block_ends(db: Database) -> None:
    with db.reading() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        conn.execute("SELECT 1")
    with pytest.raises(Cancelled), reading(db.path, read_only=True) as conn:
        raise Cancelled
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        conn.execute("SELECT 1")


def test_a_read_only_connection_cannot_write(db: Database) -> None:
    with (
        reading(db.path, read_only=True) as conn,
        pytest.raises(sqlite3.OperationalError, match="readonly"),
    ):
        conn.execute("INSERT INTO t VALUES (1)")
