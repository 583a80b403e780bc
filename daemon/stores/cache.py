"""The API response cache in the `api_cache` table: one answer per (album, source).

Rows are keyed by the normalised artist and album and the source, so an album's answers are one
primary-key range: invalidating an album costs O(its entries), never a scan. A successful answer
lives until an invalidation; a failed lookup until `expires_at` (then it is retried).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from daemon.models import album_key

AlbumKey = tuple[str, str]

_COLUMNS: Final = "artist, album, source, success, data, metadata, created_at, expires_at"


def normalize_source(source: str) -> str:
    """'  MusicBrainz ' -> 'musicbrainz'."""
    return sys.intern(source.strip().lower())


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached lookup answer; `artist` and `album` keep the spelling they were stored with."""

    artist: str
    album: str
    source: str
    success: bool
    data: Any
    metadata: dict[str, Any]
    created_at: float
    # None: kept until invalidated (successful answers).
    expires_at: float | None
    # The JSON text of data and metadata when make_entry already made it (written as is).
    data_json: str | None = field(default=None, repr=False, compare=False)
    metadata_json: str | None = field(default=None, repr=False, compare=False)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def key(self) -> AlbumKey:
        return album_key(self.artist, self.album)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artist": self.artist,
            "album": self.album,
            "source": self.source,
            "success": self.success,
            "data": self.data,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


def make_entry(
    artist: str,
    album: str,
    source: str,
    *,
    success: bool,
    data: Any,
    metadata: dict[str, Any] | None,
    now: float,
    failed_ttl_seconds: float,
    ttl_seconds: float | None = None,
) -> CacheEntry:
    """A checked entry. Raises ValueError for an empty source and TypeError when `data` or
    `metadata` cannot be written as JSON."""
    src = normalize_source(source)
    if not src:
        raise ValueError("source must not be empty")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise TypeError("metadata must be a JSON object")
    # Serialised once, now: a value that is not JSON is refused here, never by a commit.
    data_json = orjson.dumps(data).decode()
    metadata_json = orjson.dumps(metadata).decode()
    if ttl_seconds is not None:
        expires_at: float | None = now + ttl_seconds
    else:
        expires_at = None if success else now + failed_ttl_seconds
    return CacheEntry(
        artist, album, src, success, data, metadata, now, expires_at, data_json, metadata_json
    )


def _from_row(row: tuple[Any, ...]) -> CacheEntry:
    artist, album, source, success, data, metadata, created_at, expires_at = row
    return CacheEntry(
        artist,
        album,
        source,
        bool(success),
        orjson.loads(data) if data is not None else None,
        orjson.loads(metadata),
        created_at,
        expires_at,
    )


def _params(entry: CacheEntry) -> tuple[Any, ...]:
    artist_key, album_key_ = entry.key
    return (
        artist_key,
        album_key_,
        entry.source,
        entry.artist,
        entry.album,
        int(entry.success),
        entry.data_json if entry.data_json is not None else orjson.dumps(entry.data).decode(),
        entry.metadata_json
        if entry.metadata_json is not None
        else orjson.dumps(entry.metadata).decode(),
        entry.created_at,
        entry.expires_at,
    )


def _row(conn: sqlite3.Connection, artist: str, album: str, source: str) -> tuple[Any, ...] | None:
    artist_key, album_key_ = album_key(artist, album)
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {_COLUMNS} FROM api_cache WHERE artist_key = ? AND album_key = ? AND source = ?",
        (artist_key, album_key_, normalize_source(source)),
    ).fetchone()
    return row


def get(
    conn: sqlite3.Connection, artist: str, album: str, source: str, now: float
) -> CacheEntry | None:
    """The live entry for this album and source, or None (an expired one counts as none)."""
    row = _row(conn, artist, album, source)
    if row is None:
        return None
    entry = _from_row(row)
    return None if entry.expired(now) else entry


def get_json(
    conn: sqlite3.Connection, artist: str, album: str, source: str, now: float
) -> bytes | None:
    """The live entry's JSON (`to_dict`'s form), built from the stored JSON text without
    decoding it; None for none or an expired one."""
    row = _row(conn, artist, album, source)
    if row is None:
        return None
    artist_, album_, source_, success, data, metadata, created_at, expires_at = row
    if expires_at is not None and expires_at <= now:
        return None
    return orjson.dumps(
        {
            "artist": artist_,
            "album": album_,
            "source": source_,
            "success": bool(success),
            "data": orjson.Fragment(data if data is not None else "null"),
            "metadata": orjson.Fragment(metadata),
            "created_at": created_at,
            "expires_at": expires_at,
        }
    )


def put_many(conn: sqlite3.Connection, entries: Iterable[CacheEntry]) -> None:
    """Store answers, each replacing any for the same album and source."""
    conn.executemany(
        "INSERT INTO api_cache (artist_key, album_key, source, artist, album, success, data, "
        "metadata, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (artist_key, album_key, source) DO UPDATE SET artist = excluded.artist, "
        "album = excluded.album, success = excluded.success, data = excluded.data, "
        "metadata = excluded.metadata, created_at = excluded.created_at, "
        "expires_at = excluded.expires_at",
        map(_params, entries),
    )


def invalidate_keys(conn: sqlite3.Connection, keys: Iterable[AlbumKey]) -> int:
    """Drop every source's entry of the albums given by normalised keys; returns the count."""
    before = conn.total_changes
    conn.executemany("DELETE FROM api_cache WHERE artist_key = ? AND album_key = ?", keys)
    return conn.total_changes - before


def clear(conn: sqlite3.Connection) -> int:
    return conn.execute("DELETE FROM api_cache").rowcount


def cleanup_expired(conn: sqlite3.Connection, now: float) -> int:
    """Drop expired entries through the expiry index; returns how many were dropped."""
    return conn.execute(
        "DELETE FROM api_cache WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
    ).rowcount


def counts(conn: sqlite3.Connection, now: float) -> dict[str, tuple[int, int]]:
    """source -> (successful, failed) live entries. O(entries): for `stats`, off the loop."""
    result: dict[str, tuple[int, int]] = {}
    for source, ok, failed in conn.execute(
        "SELECT source, sum(success), sum(1 - success) FROM api_cache "
        "WHERE expires_at IS NULL OR expires_at > ? GROUP BY source",
        (now,),
    ):
        result[source] = (int(ok), int(failed))
    return result


def album_count(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM api_cache GROUP BY artist_key, album_key)"
    ).fetchone()
    return int(row[0])
