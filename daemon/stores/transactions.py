"""Transactions as context managers: the one place that begins, commits and rolls back.

Every connection is in autocommit mode (`schema.connect`), so a statement outside these is its
own transaction. Two forms, for a connection the caller holds:

- `with transaction(conn):` for writes: `BEGIN IMMEDIATE` (the write lock is taken at once,
  so a busy database fails here, before any work, rather than at the first write), `COMMIT`
  when the block ends, `ROLLBACK` when anything escapes it, cancellation and KeyboardInterrupt
  included.
- `with snapshot(conn):` for a consistent read of several statements: `BEGIN` (deferred: it
  takes no lock a writer waits for), ended when the block ends however it ends. A snapshot
  writes nothing, so it is rolled back rather than committed.

Neither nests: one opened on a connection already in a transaction raises `NestedTransaction`
and leaves the outer transaction as it was (a savepoint is what nests; the writer uses them).

A function that takes a connection works in the transaction its caller holds. The few that
open their own on a connection they are given own that connection at that moment (the
writer's worker thread, the migrations, the salvage and import at start-up) and say so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger(__name__)


class NestedTransaction(RuntimeError):
    """A transaction was opened on a connection that is already in one: a bug in the caller."""


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on `conn`: committed when the block ends, rolled back when any
    exception (BaseException included) leaves it; the exception then propagates unchanged."""
    _refuse_nested(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        _roll_back(conn)
        raise
    conn.execute("COMMIT")


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction on `conn`: every statement in the block sees the same database;
    ended when the block ends, however it ends."""
    _refuse_nested(conn)
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        _roll_back(conn)


def _refuse_nested(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        raise NestedTransaction(
            "a transaction was opened on a connection already in one; pass the connection "
            "down instead of opening another"
        )


def _roll_back(conn: sqlite3.Connection) -> None:
    # SQLite may have rolled back already (some I/O and full-disk errors do it by themselves).
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        # The error that brought us here is the one to report; this one is only logged.
        log.exception("rollback_failed")
