"""The library snapshot in the `tracks` table: rows in, Tracks out.

Every function takes a connection; writes run inside the caller's transaction (see writer.py).
Tracks come out in snapshot order (schema.py): the library's order at the first build, then each
track added since at the end, wherever the library puts it. A replaced track keeps its place.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from daemon.events import TrackAdded, TrackModified, TrackRemoved
from daemon.models import APP_ID_FIELDS, TRACK_FIELDS, Track, normalize_name
from daemon.stores import journal
from daemon.stores.schema import connect, wal_identity
from daemon.stores.transactions import snapshot
from daemon.stores.writer import DatabaseUnavailable

_COLUMNS: Final = ", ".join(TRACK_FIELDS)
_KEY_COLUMNS: Final = ("artist_key", "album_artist_key", "album_key")
_ALL: Final = (*TRACK_FIELDS, *_KEY_COLUMNS)
_UPSERT: Final = (
    f"INSERT INTO tracks ({', '.join(_ALL)}) VALUES ({', '.join('?' * len(_ALL))}) "
    "ON CONFLICT (persistent_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _ALL[1:])
)
_COMPILATION: Final = TRACK_FIELDS.index("compilation")
_DISABLED: Final = TRACK_FIELDS.index("disabled")
# Text an album's tracks (or the whole library) repeat: loaded once per distinct value.
_SHARED: Final = tuple(
    TRACK_FIELDS.index(name)
    for name in ("artist", "album_artist", "album", "genre", "kind", "track_type")
)


def _key(value: str | None) -> str | None:
    return normalize_name(value) if value else None


def _row(track: Track) -> tuple[Any, ...]:
    artist, album_artist = _key(track.artist), _key(track.album_artist)
    if artist is None and album_artist is None:
        # Track.album_keys(): an album with no artist at all is keyed under the empty artist.
        artist = ""
    return (*track.to_row(), artist, album_artist, _key(track.album))


def track_from_row(row: tuple[Any, ...], shared: dict[str, str] | None = None) -> Track:
    """A Track from a `SELECT <TRACK_FIELDS>` row (SQLite keeps booleans as 0/1).

    With `shared`, repeated names become one string object: sqlite3 makes a new one per row.
    """
    values = list(row)
    if shared is not None:
        for i in _SHARED:
            if (text := values[i]) is not None:
                values[i] = shared.setdefault(text, text)
    values[_COMPILATION] = bool(values[_COMPILATION])
    values[_DISABLED] = bool(values[_DISABLED])
    return Track(*values)


def upsert(conn: sqlite3.Connection, tracks: Iterable[Track]) -> None:
    """Add or replace tracks: a new one goes last, a replaced one keeps its place."""
    conn.executemany(_UPSERT, map(_row, tracks))


def delete(conn: sqlite3.Connection, persistent_ids: Iterable[str]) -> None:
    conn.executemany("DELETE FROM tracks WHERE persistent_id = ?", ((p,) for p in persistent_ids))


def delete_all(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM tracks")


def replace_all(conn: sqlite3.Connection, tracks: Iterable[Track]) -> None:
    delete_all(conn)
    upsert(conn, tracks)


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM tracks").fetchone()[0])


def get(conn: sqlite3.Connection, persistent_id: str) -> Track | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM tracks WHERE persistent_id = ?", (persistent_id,)
    ).fetchone()
    return track_from_row(row) if row is not None else None


def get_by(conn: sqlite3.Connection, field: str, value: str | int) -> Track | None:
    """The track whose `field`, the persistent id or one of APP_ID_FIELDS, is `value` (the
    first in snapshot order should a number repeat). Each has an index."""
    if field == "persistent_id":
        return get(conn, str(value))
    if field not in APP_ID_FIELDS:
        raise ValueError(f"tracks are not looked up by {field!r}")
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM tracks WHERE {field} = ? ORDER BY rowid LIMIT 1", (value,)
    ).fetchone()
    return track_from_row(row) if row is not None else None


def iterate(conn: sqlite3.Connection) -> Iterator[Track]:
    """Every track in snapshot order."""
    for row in conn.execute(f"SELECT {_COLUMNS} FROM tracks ORDER BY rowid"):
        yield track_from_row(row)


def page(conn: sqlite3.Connection, after: str | None, limit: int) -> list[Track]:
    """Up to `limit` tracks in persistent id order after `after` (which need not exist)."""
    if after is None:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM tracks ORDER BY persistent_id LIMIT ?", (limit,)
        )
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM tracks WHERE persistent_id > ? ORDER BY persistent_id LIMIT ?",
            (after, limit),
        )
    return [track_from_row(row) for row in rows]


def album(conn: sqlite3.Connection, artist: str, album_name: str) -> list[Track]:
    """The tracks of an album in disc and track order, matched on track or album artist.

    Names are compared normalised, as the API cache keys them. Costs O(tracks of the album)
    through the two album indexes.
    """
    artist_key, album_key = normalize_name(artist), normalize_name(album_name)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM tracks WHERE album_key = ?1 AND artist_key = ?2 "
        f"UNION SELECT {_COLUMNS} FROM tracks WHERE album_key = ?1 AND album_artist_key = ?2",
        (album_key, artist_key),
    ).fetchall()
    tracks = [track_from_row(row) for row in rows]
    return sorted(tracks, key=lambda t: (t.disc_number or 0, t.track_number or 0))


def _pending(
    conn: sqlite3.Connection, consumer: str, chosen: set[str] | None
) -> dict[str, Track | None]:
    """The tracks the journal's events past `consumer`'s cursor set (None: removed)."""
    position = journal.cursor(conn, consumer) or 0
    pending: dict[str, Track | None] = {}
    for row in journal.read(conn, position, -1, journal.TRACK_EVENT_TYPES):
        event = journal.event_from_row(*row)
        if not isinstance(event, TrackAdded | TrackModified | TrackRemoved):
            continue
        pid = event.persistent_id
        if chosen is not None and pid not in chosen:
            continue
        if isinstance(event, TrackRemoved):
            pending[pid] = None
        else:
            pending[pid] = event.track if isinstance(event, TrackAdded) else event.new
    return pending


def at_head(conn: sqlite3.Connection, consumer: str, keys: Collection[str]) -> dict[str, Track]:
    """The tracks of these keys (those that exist) as the journal's head describes them, read
    on `conn` in the caller's read snapshot.

    The snapshot lags the journal while `consumer` (the snapshot's merger) catches up: the
    track events past its cursor are replayed on top of what the table holds.
    """
    chosen = set(keys)
    wanted = list(chosen)
    found: dict[str, Track] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM tracks WHERE persistent_id IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        for row in rows:
            track = track_from_row(row)
            found[track.persistent_id] = track
    pending = _pending(conn, consumer, chosen)
    for pid, replaced in pending.items():
        if replaced is None:
            found.pop(pid, None)
        else:
            found[pid] = replaced
    return found


def each_at_head(conn: sqlite3.Connection, consumer: str) -> Iterator[Track]:
    """Every track as the journal's head describes it, in snapshot order, one at a time (a
    full comparison never holds them all), read on `conn` in the caller's read snapshot."""
    pending = _pending(conn, consumer, None)
    shared: dict[str, str] = {}
    for row in conn.execute(f"SELECT {_COLUMNS} FROM tracks ORDER BY rowid"):
        track: Track | None = track_from_row(row, shared)
        if track is not None and track.persistent_id in pending:
            track = pending.pop(track.persistent_id)
        if track is not None:
            yield track
    # Added past the merger's cursor: last, as the merger will add them.
    yield from (track for track in pending.values() if track is not None)


def keys_at_head(conn: sqlite3.Connection, consumer: str) -> Iterator[str]:
    """Every key at the journal's head, read on `conn` in the caller's read snapshot (see
    `each_at_head`)."""
    pending = _pending(conn, consumer, None)
    for (pid,) in conn.execute("SELECT persistent_id FROM tracks ORDER BY rowid"):
        if pid not in pending or pending.pop(pid) is not None:
            yield pid
    yield from (pid for pid, track in pending.items() if track is not None)


class HeadTracks:
    """`at_head` on a read-only connection of its own, each call in one read snapshot, for the
    scanner's worker threads (one call at a time). Opened at once, like the writer's
    connection: it follows the database file if the state dir is moved while the daemon
    runs."""

    def __init__(self, path: Path, consumer: str) -> None:
        self.path = path
        self.consumer = consumer
        self._conn = connect(path, read_only=True)
        self._wal = wal_identity(path)
        self._lock = threading.Lock()
        self._busy = self._closed = False

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection for one call, in a read snapshot. A close during it (at shutdown,
        with a read left running on its thread) takes effect when the call ends: SQLite must
        never have a connection closed under a statement."""
        with self._lock:
            if self._closed:
                raise DatabaseUnavailable("the snapshot is closed: the daemon is stopping")
            self._busy = True
        try:
            # The daemon starts a new WAL when its file was deleted or replaced (renew_wal):
            # a connection still holding the old one would not see the commits made since.
            wal = wal_identity(self.path)
            if wal is not None and wal != self._wal:
                self._conn.close()
                self._conn = connect(self.path, read_only=True)
                self._wal = wal
            with snapshot(self._conn) as conn:
                yield conn
        except sqlite3.Error as err:
            raise _unavailable(err) from None
        finally:
            with self._lock:
                self._busy = False
                if self._closed:
                    self._conn.close()

    def get(self, keys: Collection[str]) -> dict[str, Track]:
        """`at_head`; DatabaseUnavailable when the database cannot be read."""
        with self._using() as conn:
            return at_head(conn, self.consumer, keys)

    def keys(self) -> Iterator[str]:
        """Every key at the journal's head; DatabaseUnavailable when the database cannot be
        read."""
        with self._using() as conn:
            yield from keys_at_head(conn, self.consumer)

    def each(self) -> Iterator[Track]:
        """`each_at_head`; DatabaseUnavailable when the database cannot be read."""
        with self._using() as conn:
            yield from each_at_head(conn, self.consumer)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if not self._busy:
                self._conn.close()


def _unavailable(err: sqlite3.Error) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the snapshot could not be read from the database ({err}); the scan is tried again shortly"
    )
