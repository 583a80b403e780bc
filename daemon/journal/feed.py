"""Positions in the change journal as programs see them: cursors, and reading changes since one.

A cursor is an opaque string naming the position just after an event in *this* database. It is
`<epoch>.<seq>` today, but programs must treat it as opaque: compare nothing, parse nothing.
The epoch is made when the database file is created, so a cursor of a deleted-and-rebuilt
database is recognised as foreign (the program must read the whole state again: "resync")
rather than silently taken for a position in the new one.

Every function here works on a connection the caller owns, inside one read transaction, so what
it answers is one consistent moment of the database.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from typing import Any, Final

import orjson

from daemon.events import AnyEvent
from daemon.journal.merger import CONSUMER as SNAPSHOT
from daemon.stores import journal, tracks

# The epoch as `open_database` makes it (uuid4 hex), loosely; the seq without leading zeros.
_CURSOR: Final = re.compile(r"([A-Za-z0-9_-]{1,64})\.(0|[1-9][0-9]{0,17})")
MAX_PAGE: Final = 10000
# The daemon's own cursors (the merger's, the invalidator's) are named under it; programs may not.
RESERVED_PREFIX: Final = "musicd."
# What an event's wire form adds to its stored text (seq, cursor), roughly, for a byte bound.
_EVENT_OVERHEAD: Final = 120


class CursorError(ValueError):
    """A cursor that is not one of ours, or that names a position this database never reached."""


def is_reserved(name: str) -> bool:
    """Whether a cursor name is the daemon's own (in any case: a program may not take one)."""
    return name.casefold().startswith(RESERVED_PREFIX)


def kept_for_program(updated_at: float, *, now: float, max_age_days: float) -> bool:
    """Whether the trim keeps the events after a program's cursor: it committed within
    `journal.max_age_days`."""
    return updated_at >= now - max_age_days * 86400.0


def require_reached(conn: sqlite3.Connection, seq: int) -> int:
    """The journal's head; CursorError when `seq` is beyond it (this database never got there)."""
    head = journal.head(conn)
    if seq > head:
        raise CursorError(
            f"the cursor is ahead of this database's journal (position {seq}, the last event is "
            f"{head}); it was not handed out by this database"
        )
    return head


def encode_cursor(epoch: str, seq: int) -> str:
    return f"{epoch}.{seq}"


def decode_cursor(text: str) -> tuple[str, int]:
    """(epoch, seq) of a cursor; CursorError for anything musicd did not hand out."""
    match = _CURSOR.fullmatch(text)
    if match is None:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise CursorError(
            f"{shown!r} is not a musicd cursor (use one from an event, changes.since, "
            "tracks.list or cursor.get, unchanged)"
        )
    return match.group(1), int(match.group(2))


def wire_event(event: AnyEvent, epoch: str) -> dict[str, Any]:
    """A live event as subscribers receive it: its wire form plus its cursor."""
    wire = event.to_wire()
    wire["cursor"] = encode_cursor(epoch, event.seq)
    return wire


def wire_row(seq: int, body: str | bytes, epoch: str) -> dict[str, Any]:
    """A stored event as subscribers receive it; identical to `wire_event` of the same event."""
    data: dict[str, Any] = orjson.loads(body)
    return {"type": data.pop("type"), "seq": seq, **data, "cursor": encode_cursor(epoch, seq)}


def snapshot_position(conn: sqlite3.Connection) -> int:
    """The journal position the `tracks` table reflects exactly.

    The snapshot merger applies events and moves its cursor in one transaction, so in a read
    transaction the tracks table holds every track event up to this seq and none after. When
    the journal holds nothing older (a first build fills the table without events, an imported
    database starts its journal past the old files' last seq), the table is complete up to
    where the journal begins.
    """
    merged = journal.cursor(conn, SNAPSHOT) or 0
    first = journal.oldest(conn)
    floor = first - 1 if first is not None else journal.head(conn)
    return max(merged, floor)


def resync(conn: sqlite3.Connection, epoch: str, reason: str) -> dict[str, Any]:
    """The answer to a position that cannot be followed: read everything, then follow from here."""
    return {
        "events": [],
        "cursor": encode_cursor(epoch, snapshot_position(conn)),
        "more": False,
        "resync": True,
        "reason": reason,
    }


def gap_reason(conn: sqlite3.Connection, epoch: str, cursor_epoch: str, seq: int) -> str | None:
    """Why the events after this position cannot be given (None: they can).

    CursorError for a position beyond the journal's head: this database never handed it out.
    """
    if cursor_epoch != epoch:
        return (
            "the cursor belongs to another database (it was deleted or rebuilt since); read the "
            "library again with tracks.list and follow changes from the cursor given here"
        )
    head = require_reached(conn, seq)
    first = journal.oldest(conn)
    if (first is None and seq < head) or (first is not None and seq + 1 < first):
        kept = f"it keeps events after {first - 1}" if first is not None else "it is empty"
        return (
            f"the journal no longer holds the events after this cursor ({kept}); read the "
            "library again with tracks.list and follow changes from the cursor given here"
        )
    built = journal.meta_value(conn, journal.SNAPSHOT_BUILT)
    if isinstance(built, int) and seq < built:
        # The build filled the tracks table without an event per track: the events after a
        # position handed out before it (during it, say) do not lead to the library.
        return (
            "the library snapshot was built after this cursor was handed out (the first build, "
            "or the rebuild of a damaged database), without an event per track; read the "
            "library again with tracks.list and follow changes from the cursor given here"
        )
    return None


def building(conn: sqlite3.Connection) -> bool:
    """Whether the snapshot's first build (or the rebuild of a damaged database) is still to
    be committed: until then `tracks.list` answers an empty library with `building: true`,
    whatever part of it the tracks table holds already, and the scanner builds it."""
    if journal.meta_value(conn, journal.SNAPSHOT_BUILDING) is not None:
        # Under way, or cut short (the daemon was killed): its rows are no snapshot.
        return True
    if journal.meta_value(conn, journal.SNAPSHOT_BUILT) is not None:
        return False
    # A database built before the build recorded its position, or one that imported an older
    # snapshot (which needs no build), has a full scan or tracks.
    return journal.meta_value(conn, "last_full_scan") is None and tracks.count(conn) == 0


def read_after(
    conn: sqlite3.Connection,
    epoch: str,
    seq: int,
    limit: int,
    types: Iterable[str] | None,
    max_bytes: int | None = None,
    exclude_origins: Iterable[str] = (),
) -> dict[str, Any]:
    """Up to `limit` events after `seq` (of `types`, less the track events of
    `exclude_origins`), and the position after what was read.

    With fewer than `limit` events left, the position is the journal's head: the events of
    other types (or excluded origins) up to there were looked at too, and need not be read
    again. With `max_bytes`, the page ends (`more`) after the event whose stored text takes it
    past that size.
    """
    rows = journal.read(conn, seq, limit + 1, types, exclude_origins)
    more = len(rows) > limit
    rows = rows[:limit]
    if max_bytes is not None:
        size = 0
        for index, (_seq, _kind, body) in enumerate(rows):
            size += len(body) + _EVENT_OVERHEAD
            if size > max_bytes and index > 0:
                rows, more = rows[:index], True
                break
    end = rows[-1][0] if more else max(journal.head(conn), seq)
    return {
        "events": [wire_row(s, body, epoch) for s, _kind, body in rows],
        "cursor": encode_cursor(epoch, end),
        "more": more,
        "resync": False,
        "reason": None,
        "last_seq": end,
    }


def changes_since(
    conn: sqlite3.Connection,
    epoch: str,
    cursor: str | None,
    limit: int,
    types: Iterable[str] | None,
    *,
    consumer: str | None = None,
    max_bytes: int | None = None,
    exclude_origins: Iterable[str] = (),
) -> dict[str, Any]:
    """`changes.since`, read on `conn` in the caller's read transaction."""
    if consumer is not None:
        seq = journal.cursor(conn, consumer)
        if seq is None:
            return resync(conn, epoch, f"consumer {consumer!r} has not committed a cursor yet")
        cursor_epoch = epoch
    elif cursor is None:
        return resync(conn, epoch, "no cursor was given")
    else:
        cursor_epoch, seq = decode_cursor(cursor)
    reason = gap_reason(conn, epoch, cursor_epoch, seq)
    if reason is not None:
        return resync(conn, epoch, reason)
    result = read_after(conn, epoch, seq, limit, types, max_bytes, exclude_origins)
    del result["last_seq"]
    return result
