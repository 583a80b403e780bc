"""Writes programs said they are about to make, in the `expectations` table (see
daemon/journal/origins.py for the rule that matches them with what a scan finds).

One row per track and origin: a second announcement of the same track by the same program
before its echo was seen adds its fields to the first (both writes may well come back in one
scan) and keeps the later expiry. Every function works in its caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

# What the table holds at most: each announcement names tracks of the library, but a program
# that announces without ever writing must not grow the database without end.
MAX_PENDING: Final = 100_000


@dataclass(frozen=True, slots=True)
class Expectation:
    """One program's announced new values for one track, until `expires_at`."""

    rowid: int
    persistent_id: str
    origin: str
    fields: dict[str, Any]
    expires_at: float


def add(
    conn: sqlite3.Connection,
    origin: str,
    writes: Iterable[tuple[str, dict[str, Any]]],
    *,
    now: float,
    ttl_seconds: float,
) -> int:
    """Store (persistent_id, fields) announcements of `origin`; returns how many."""
    rows = [
        (persistent_id, origin, orjson.dumps(fields).decode(), now + ttl_seconds, now)
        for persistent_id, fields in writes
    ]
    conn.executemany(
        "INSERT INTO expectations (persistent_id, origin, fields, expires_at, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (persistent_id, origin) DO UPDATE SET "
        "fields = json_patch(fields, excluded.fields), "
        "expires_at = max(expires_at, excluded.expires_at)",
        rows,
    )
    return len(rows)


def pending(conn: sqlite3.Connection) -> int:
    """How many are stored, expired or not (the expired go at the next housekeeping)."""
    return int(conn.execute("SELECT count(*) FROM expectations").fetchone()[0])


def live_for(
    conn: sqlite3.Connection, persistent_ids: Iterable[str], now: float
) -> dict[str, list[Expectation]]:
    """The unexpired expectations of these tracks, oldest first, by persistent id."""
    ids = orjson.dumps(sorted(set(persistent_ids))).decode()
    found: dict[str, list[Expectation]] = {}
    for rowid, persistent_id, origin, fields, expires_at in conn.execute(
        "SELECT rowid, persistent_id, origin, fields, expires_at FROM expectations "
        "WHERE persistent_id IN (SELECT value FROM json_each(?)) AND expires_at > ? "
        "ORDER BY rowid",
        (ids, now),
    ):
        found.setdefault(persistent_id, []).append(
            Expectation(rowid, persistent_id, origin, orjson.loads(fields), expires_at)
        )
    return found


def consume(conn: sqlite3.Connection, rowids: Iterable[int]) -> None:
    conn.executemany("DELETE FROM expectations WHERE rowid = ?", ((r,) for r in rowids))


def drop_expired(conn: sqlite3.Connection, now: float) -> int:
    """Delete the expectations whose time is up; returns how many."""
    return conn.execute("DELETE FROM expectations WHERE expires_at <= ?", (now,)).rowcount
