"""What the programs that use musicd ask for in bulk: changes since a position, durable named
cursors and the whole library page by page (their cache calls are cache_api.py's).

Big reads (a page of up to 10,000 events or tracks) run in a worker thread on a connection of
their own, so the event loop never waits for them; small ones (a cursor row, a page of at most
SMALL_PAGE items) run on the loop's read connection. Each read is one read snapshot, so what it
answers comes from one moment. Writes go through the one `Writer`.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
import orjson

from daemon.config import Config
from daemon.journal import feed
from daemon.journal.feed import CursorError
from daemon.models import APP_ID_FIELDS, TRACK_FIELDS
from daemon.stores import expectations, journal, tracks
from daemon.stores.database import Database
from daemon.stores.transactions import snapshot
from daemon.stores.writer import Writer

T = TypeVar("T")

# Columns SQLite keeps as 0/1 that the wire gives as booleans (as Track does).
_BOOLEANS = frozenset({"compilation", "disabled"})


@dataclass
class Encoded:
    """A JSON array built item by item within a byte bound."""

    array: orjson.Fragment
    count: int
    # The last item in the array (None when empty).
    last: Any
    # Whether an item was left out because it did not fit.
    cut: bool


def encode_within(items: Iterable[Any], max_bytes: int) -> Encoded:
    """A JSON array of the items that fit in `max_bytes` (at least one). Items are encoded as
    they come into one buffer, so only the encoded array is ever held whole (orjson gives each
    item a buffer of several KiB: kept one by one, 3,000 tracks took 25 MiB)."""
    out = bytearray(b"[")
    count = 0
    last = None
    for item in items:
        data = orjson.dumps(item)
        if count and len(out) + len(data) + 1 > max_bytes:
            out[-1:] = b"]"
            return Encoded(orjson.Fragment(bytes(out)), count, last, True)
        out += data
        out += b","
        count += 1
        last = item
    if count:
        out[-1:] = b"]"
    else:
        out += b"]"
    return Encoded(orjson.Fragment(bytes(out)), count, last, False)


BULK_READS_AT_ONCE: Final = 2
# Pages this small are read on the loop: a thread costs a connection and a GIL hand-off per row
# while the loop is busy (100 tracks: 23 ms at the median beside busy clients, 1 ms on the loop).
SMALL_PAGE: Final = 100
# Named cursors kept at most (the daemon's own among them): what `cursor.commit` may add.
MAX_CONSUMERS: Final = 1000


class WritesRefused(ValueError):
    """An announcement of writes that was not stored (a track not known, too many pending)."""


@dataclass
class BulkReads:
    """Where the programs' reads run, each in one read snapshot: a big one in a worker thread on
    a connection of its own, a few at a time (each holds up to a page of rows and its encoded
    answer, MAX_ANSWER_BYTES, until it is done); a small one on the loop's read connection."""

    db: Database
    limiter: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(BULK_READS_AT_ONCE)
    )

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, small: bool = False) -> T:
        """`fn` in a read snapshot on its own connection in a worker thread; a `small` one on
        the loop's."""
        if small:
            with snapshot(self.db.read_conn) as conn:
                return fn(conn)

        def run() -> T:
            with self.db.reading() as conn, snapshot(conn):
                return fn(conn)

        return await anyio.to_thread.run_sync(run, limiter=self.limiter)


@dataclass
class ProgramApi:
    config: Config
    db: Database
    writer: Writer
    reads: BulkReads

    @property
    def epoch(self) -> str:
        return self.db.epoch

    async def changes_since(
        self,
        cursor: str | None,
        *,
        consumer: str | None = None,
        limit: int = 1000,
        types: Iterable[str] | None = None,
        max_bytes: int | None = None,
        exclude_origins: Iterable[str] = (),
    ) -> dict[str, Any]:
        """CursorError for a cursor that is not ours or is ahead of the journal. A page ends
        early (`more: true`) once its events' stored text passes `max_bytes`."""
        return await self.reads.run(
            partial(
                feed.changes_since,
                epoch=self.epoch,
                cursor=cursor,
                limit=limit,
                types=types,
                consumer=consumer,
                max_bytes=max_bytes,
                exclude_origins=exclude_origins,
            ),
            small=limit <= SMALL_PAGE,
        )

    def start_position(self, cursor: str) -> tuple[int | None, dict[str, Any] | None]:
        """Where a `subscribe(since=cursor)` replay starts: (seq, None), or (None, the resync
        answer) when the position cannot be followed. CursorError as for changes_since."""
        epoch, seq = feed.decode_cursor(cursor)
        with snapshot(self.db.read_conn) as conn:
            reason = feed.gap_reason(conn, self.epoch, epoch, seq)
            if reason is not None:
                return None, feed.resync(conn, self.epoch, reason)
            return seq, None

    async def read_after(
        self,
        seq: int,
        limit: int,
        types: Iterable[str] | None,
        exclude_origins: Iterable[str] = (),
    ) -> dict[str, Any]:
        """The next replay page after `seq` (with `last_seq`), or a resync answer when the
        journal was trimmed past it meanwhile."""

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            reason = feed.gap_reason(conn, self.epoch, self.epoch, seq)
            if reason is not None:
                return feed.resync(conn, self.epoch, reason)
            return feed.read_after(
                conn, self.epoch, seq, limit, types, exclude_origins=exclude_origins
            )

        return await self.reads.run(read, small=limit <= SMALL_PAGE)

    def cursor_get(self, consumer: str) -> dict[str, Any]:
        with snapshot(self.db.read_conn) as conn:
            row = conn.execute(
                "SELECT seq, updated_at FROM cursors WHERE consumer = ?", (consumer,)
            ).fetchone()
            head = journal.head(conn)
        if row is None:
            return {"consumer": consumer, "cursor": None, "updated_at": None, "behind": None}
        seq, updated_at = int(row[0]), float(row[1])
        return {
            "consumer": consumer,
            "cursor": feed.encode_cursor(self.epoch, seq),
            "updated_at": updated_at,
            "behind": max(0, head - seq),
        }

    async def cursor_commit(self, consumer: str, cursor: str, *, force: bool) -> dict[str, Any]:
        """Store a consumer's position; never backwards unless `force`. CursorError for a
        cursor that is not ours, of another database, or ahead of the journal."""
        epoch, seq = feed.decode_cursor(cursor)
        if epoch != self.epoch:
            raise CursorError(
                "the cursor belongs to another database (it was deleted or rebuilt since); "
                "resync with changes.since and commit the cursor it gives"
            )

        def commit(conn: sqlite3.Connection) -> dict[str, Any]:
            feed.require_reached(conn, seq)
            previous = journal.cursor(conn, consumer)
            if previous is None and len(journal.cursors(conn)) >= MAX_CONSUMERS:
                # Each one is listed by `stats` and may keep the journal from being trimmed.
                raise CursorError(
                    f"too many named cursors (at most {MAX_CONSUMERS}, the daemon's own "
                    "included); use one name per program, not one per run"
                )
            moved = previous is None or seq >= previous or force
            if moved:
                journal.set_cursor(conn, consumer, seq, time.time())
            kept = seq if moved else previous
            assert kept is not None
            return {
                "consumer": consumer,
                "committed": moved,
                "cursor": feed.encode_cursor(self.epoch, kept),
                "previous": None if previous is None else feed.encode_cursor(self.epoch, previous),
                "reason": None
                if moved
                else "a commit never moves a consumer backwards; pass force to do so",
            }

        result: dict[str, Any] = await self.writer.submit(commit)
        return result

    def consumers(self) -> dict[str, dict[str, Any]]:
        """Every program's named cursor and how far behind the journal it is (for `stats`)."""
        with snapshot(self.db.read_conn) as conn:
            rows = journal.cursors(conn)
            head = journal.head(conn)
        max_age_days = self.config.journal.max_age_days
        now = time.time()
        return {
            name: {
                "cursor": feed.encode_cursor(self.epoch, seq),
                "behind": max(0, head - seq),
                "updated_at": updated_at,
                # The journal keeps what it still needs while it commits within max_age_days.
                "protected": feed.kept_for_program(updated_at, now=now, max_age_days=max_age_days),
            }
            for name, (seq, updated_at) in sorted(rows.items())
            if not feed.is_reserved(name)
        }

    async def tracks_list(
        self,
        after: str | None,
        limit: int,
        fields: Sequence[str] | None,
        max_bytes: int,
        *,
        by: str | None = None,
        ids: Sequence[int] = (),
    ) -> dict[str, Any]:
        """A page of tracks in persistent id order, and the journal position it was read at.

        With `by` (one of APP_ID_FIELDS), only the tracks whose `by` is one of `ids`. The page
        is encoded here, off the event loop, and ends early (with `next`) once it would be
        over `max_bytes`; it holds at least one track.
        """
        wanted = None if fields is None else {"persistent_id", *fields}
        names = [n for n in TRACK_FIELDS if wanted is None or n in wanted]
        flags = [i for i, n in enumerate(names) if n in _BOOLEANS]
        if by is not None and by not in APP_ID_FIELDS:
            raise ValueError(f"tracks are not listed by {by!r}")
        among = "" if by is None else f"AND {by} IN (SELECT value FROM json_each(?3)) "
        # Rows straight to dicts of the wanted columns: a page is 10,000 of them.
        sql = (
            f"SELECT {', '.join(names)} FROM tracks WHERE persistent_id > ?1 {among}"
            "ORDER BY persistent_id LIMIT ?2"
        )
        args: tuple[Any, ...] = (after or "", limit + 1)
        if by is not None:
            args = (*args, orjson.dumps(list(ids)).decode())

        def as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
            if flags:
                values = list(row)
                for i in flags:
                    values[i] = bool(values[i])
                return dict(zip(names, values, strict=True))
            return dict(zip(names, row, strict=True))

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            position = feed.snapshot_position(conn)
            cursor = feed.encode_cursor(self.epoch, position)
            if feed.building(conn):
                # The table holds part of the library at most: none of it is an answer.
                return {"tracks": [], "next": None, "cursor": cursor, "building": True}
            # Encoded as they are read, never all held: 10,000 rows as Python objects are
            # some 15 MiB, their answer a quarter of it.
            rows = conn.execute(sql, args)
            page = encode_within(map(as_dict, itertools.islice(rows, limit)), max_bytes)
            more = page.cut or (page.count == limit and rows.fetchone() is not None)
            return {
                "tracks": page.array,
                "next": page.last["persistent_id"] if more else None,
                "cursor": cursor,
                "building": False,
            }

        return await self.reads.run(read, small=limit <= SMALL_PAGE)

    async def expect_writes(
        self,
        origin: str,
        writes: Sequence[tuple[str, str | int, dict[str, Any]]],
        *,
        ttl_seconds: float,
    ) -> int:
        """Store `origin`'s announced writes, each (id field, id, new values), all or none;
        returns how many. A track named by one of Music.app's numbers is stored under its
        persistent id, resolved now: those numbers change when the app restarts.

        WritesRefused for a number no track has, or when the table would pass its bound.
        """

        def store(conn: sqlite3.Connection) -> int:
            resolved: list[tuple[str, dict[str, Any]]] = []
            for index, (by, value, fields) in enumerate(writes):
                if by == "persistent_id":
                    # Stored as given: a track a scan is adding now may not be in `tracks` yet.
                    resolved.append((str(value), fields))
                    continue
                found = tracks.get_by(conn, by, value)
                if found is None:
                    raise WritesRefused(
                        f"tracks[{index}]: no track has {by} {value} (Music.app's numbers "
                        "change when it restarts); read it again with tracks.get or name the "
                        "track by persistent_id; nothing was stored"
                    )
                resolved.append((found.persistent_id, fields))
            if expectations.pending(conn) + len(resolved) > expectations.MAX_PENDING:
                raise WritesRefused(
                    f"more than {expectations.MAX_PENDING} announced writes are waiting for "
                    "their echo; announce only what is written now; nothing was stored"
                )
            return expectations.add(
                conn, origin, resolved, now=time.time(), ttl_seconds=ttl_seconds
            )

        stored: int = await self.writer.submit(store)
        return stored
