"""The change journal, consumer cursors and metadata, in the `journal`, `cursors` and `meta` tables.

Every event gets its `seq` here, inside the transaction that records it. `journal.seq` is an
AUTOINCREMENT key: SQLite remembers the largest one ever used (in `sqlite_sequence`), so a seq
is never handed out twice for the life of the database, across restarts, crashes and trims.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from daemon.events import (
    TRACK_ADDED,
    TRACK_MODIFIED,
    TRACK_REMOVED,
    AnyEvent,
    ObserverEvent,
    TrackAdded,
    TrackModified,
    TrackRemoved,
)
from daemon.models import Track

TRACK_EVENT_TYPES: Final = (TRACK_ADDED, TRACK_MODIFIED, TRACK_REMOVED)
# The meta key holding the seq of the build's `scan_finished`: the position at which the first
# build (or the rebuild of a corrupt database) filled the tracks table without track events.
SNAPSHOT_BUILT: Final = "snapshot_built_seq"
# The meta key set (to the time it began) while a build of the snapshot is under way, from its
# first transaction to its last: the tracks table then holds part of a library at most, never a
# snapshot, even after the daemon was killed during the build.
SNAPSHOT_BUILDING: Final = "snapshot_building_since"


def head(conn: sqlite3.Connection) -> int:
    """The largest seq ever handed out (0 for a new database)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
    return int(row[0]) if row is not None else 0


def oldest(conn: sqlite3.Connection) -> int | None:
    """The smallest seq the journal still holds, or None when it is empty."""
    row = conn.execute("SELECT min(seq) FROM journal").fetchone()
    return int(row[0]) if row[0] is not None else None


def pending_track_events(conn: sqlite3.Connection, after: int) -> int:
    """How many track events come after `after` (what a consumer there has yet to apply)."""
    marks = ", ".join("?" * len(TRACK_EVENT_TYPES))
    row = conn.execute(
        f"SELECT count(*) FROM journal WHERE seq > ? AND type IN ({marks})",
        (after, *TRACK_EVENT_TYPES),
    ).fetchone()
    return int(row[0])


def next_track_event(conn: sqlite3.Connection, after: int) -> int | None:
    """The seq of the first track event after `after`, or None when none follows."""
    marks = ", ".join("?" * len(TRACK_EVENT_TYPES))
    row = conn.execute(
        f"SELECT min(seq) FROM journal WHERE seq > ? AND type IN ({marks})",
        (after, *TRACK_EVENT_TYPES),
    ).fetchone()
    return int(row[0]) if row[0] is not None else None


def _body(event: AnyEvent) -> bytes:
    wire = event.to_wire()
    del wire["seq"]
    return orjson.dumps(wire)


def append(conn: sqlite3.Connection, events: Sequence[AnyEvent], now: float) -> list[AnyEvent]:
    """Record events in order; returns them with their seq set."""
    if not events:
        return []
    # One writer holds the write lock for the whole transaction, so the seqs after the head are
    # ours; giving them explicitly lets executemany insert them in one call.
    base = head(conn)
    numbered = [dataclasses.replace(e, seq=base + i) for i, e in enumerate(events, start=1)]
    conn.executemany(
        "INSERT INTO journal (seq, type, persistent_id, at, body, origin) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            (
                e.seq,
                e.type,
                None if isinstance(e, ObserverEvent) else e.persistent_id,
                e.at if isinstance(e, ObserverEvent) else now,
                _body(e).decode(),
                None if isinstance(e, ObserverEvent) else e.origin,
            )
            for e in numbered
        ),
    )
    return numbered


def read(
    conn: sqlite3.Connection,
    after: int,
    limit: int,
    types: Iterable[str] | None = None,
    exclude_origins: Iterable[str] = (),
) -> list[tuple[int, str, str]]:
    """(seq, type, body) of up to `limit` events after `after`, in seq order, of `types`
    (all when None), less the track events of `exclude_origins`."""
    where = ["seq > ?"]
    args: list[Any] = [after]
    if types is not None:
        wanted = sorted(set(types))
        where.append(f"type IN ({', '.join('?' * len(wanted))})")
        args += wanted
    excluded = sorted(set(exclude_origins))
    if excluded:
        where.append(f"(origin IS NULL OR origin NOT IN ({', '.join('?' * len(excluded))}))")
        args += excluded
    return conn.execute(
        f"SELECT seq, type, body FROM journal WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
        (*args, limit),
    ).fetchall()


def event_from_row(seq: int, kind: str, body: str | bytes) -> AnyEvent:
    """Rebuild an event from its journal row."""
    data: dict[str, Any] = orjson.loads(body)
    if kind == TRACK_ADDED:
        return TrackAdded(Track(**data["track"]), seq=seq, origin=data["origin"])
    if kind == TRACK_MODIFIED:
        new = Track(**data["track"])
        old = dataclasses.replace(new, **data["old"])
        return TrackModified(old, new, tuple(data["changed"]), seq=seq, origin=data["origin"])
    if kind == TRACK_REMOVED:
        track = Track(
            data["persistent_id"],
            name=data.get("name"),
            artist=data.get("artist"),
            album_artist=data.get("album_artist"),
            album=data.get("album"),
        )
        return TrackRemoved(track, seq=seq, origin=data["origin"])
    data.pop("type", None)
    at = data.pop("at", 0.0)
    return ObserverEvent(kind, data, seq=seq, at=at)


def wire_from_row(seq: int, body: str | bytes) -> dict[str, Any]:
    """The event as subscribers receive it, straight from its row."""
    data: dict[str, Any] = orjson.loads(body)
    return {"type": data.pop("type"), "seq": seq, **data}


def trim(conn: sqlite3.Connection, *, keep_after: int, before_at: float, max_events: int) -> int:
    """Drop events older than `before_at` or beyond the newest `max_events`, but none after
    `keep_after` (what a consumer still needs). Returns how many were dropped."""
    limit_seq = head(conn) - max_events
    cutoff_row = conn.execute("SELECT max(seq) FROM journal WHERE at < ?", (before_at,)).fetchone()
    by_age = int(cutoff_row[0]) if cutoff_row[0] is not None else 0
    upto = min(max(limit_seq, by_age), keep_after)
    if upto <= 0:
        return 0
    return conn.execute("DELETE FROM journal WHERE seq <= ?", (upto,)).rowcount


# -- cursors ---------------------------------------------------------------------------------


def cursor(conn: sqlite3.Connection, consumer: str) -> int | None:
    row = conn.execute("SELECT seq FROM cursors WHERE consumer = ?", (consumer,)).fetchone()
    return int(row[0]) if row is not None else None


def set_cursor(conn: sqlite3.Connection, consumer: str, seq: int, now: float) -> None:
    conn.execute(
        "INSERT INTO cursors (consumer, seq, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
        (consumer, seq, now),
    )


def cursors(conn: sqlite3.Connection) -> dict[str, tuple[int, float]]:
    return {
        name: (int(seq), float(at))
        for name, seq, at in conn.execute("SELECT consumer, seq, updated_at FROM cursors")
    }


# -- metadata --------------------------------------------------------------------------------


def meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {key: orjson.loads(value) for key, value in conn.execute("SELECT key, value FROM meta")}


def meta_value(conn: sqlite3.Connection, key: str) -> Any:
    """One metadata value, or None when it is not set."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return orjson.loads(row[0]) if row is not None else None


def set_meta(conn: sqlite3.Connection, values: dict[str, Any]) -> None:
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        ((key, orjson.dumps(value).decode()) for key, value in values.items()),
    )


def delete_meta(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM meta WHERE key = ?", (key,))
