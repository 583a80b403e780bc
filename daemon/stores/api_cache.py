"""The API response cache: one answer per (album, source), invalidated album by album.

Entries are kept grouped by normalised album key, then by source, so invalidating an album
touches only that album's entries, never the whole cache. A successful answer lives until an
invalidation; a failed lookup lives `failed_ttl_seconds` so it is retried later.

The per-album dicts are copy-on-write (a change builds a new small dict), so `capture()` only
copies the list of them and the worker thread can serialise it while the loop goes on.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from daemon.models import album_key, normalize_name
from daemon.stores._atomic import (
    SaveTracker,
    ensure_private_dir,
    load_json_or_quarantine,
    paused_gc,
    remove_durably,
    write_atomic,
)
from daemon.stores.snapshot import freeze_if_big

log = structlog.get_logger(__name__)

CACHE_VERSION: Final = 1
CACHE_FILE: Final = "api_cache.json"
# Entries serialised per orjson call. Each call holds the GIL, so while a worker thread writes
# the cache the event loop waits for one chunk at most (a few ms), never for the whole file.
_DUMP_CHUNK: Final = 2048

AlbumKey = tuple[str, str]


def normalize_source(source: str) -> str:
    """'  MusicBrainz ' -> 'musicbrainz'."""
    # Interned: a handful of sources, each shared by every entry instead of one copy per entry.
    return sys.intern(source.strip().lower())


@dataclass(frozen=True, slots=True)
class CachedApiResult:
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

    @classmethod
    def from_dict(cls, value: Any) -> CachedApiResult:
        """Build from a decoded JSON object; TypeError/KeyError/ValueError if malformed."""
        if type(value) is not dict:
            raise TypeError("cache entry is not an object")
        artist, album, source = value["artist"], value["album"], value["source"]
        success, created_at = value["success"], value["created_at"]
        metadata = value.get("metadata", {})
        expires_at = value.get("expires_at")
        if not (type(artist) is str and type(album) is str and type(source) is str):
            raise TypeError("cache entry artist, album and source must be strings")
        source = normalize_source(source)
        if not source:
            raise ValueError("cache entry with an empty source")
        if type(success) is not bool or type(metadata) is not dict:
            raise TypeError("cache entry success must be a bool and metadata an object")
        if type(created_at) not in (int, float) or type(expires_at) not in (int, float, type(None)):
            raise TypeError("cache entry times must be numbers")
        return cls(
            artist, album, source, success, value.get("data"), metadata, created_at, expires_at
        )


class ApiCache:
    """The cache in memory, and its file."""

    def __init__(
        self,
        path: Path,
        *,
        failed_ttl_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.failed_ttl_seconds = failed_ttl_seconds
        self._clock = clock
        # album key -> source -> entry. The inner dicts are never changed in place.
        self._albums: dict[AlbumKey, dict[str, CachedApiResult]] = {}
        # Failed entries, so that expiring them never scans the successful ones.
        self._failed: dict[tuple[AlbumKey, str], CachedApiResult] = {}
        # source -> [successful, failed]
        self._counts: dict[str, list[int]] = {}
        self._hits: Counter[str] = Counter()
        self._misses: Counter[str] = Counter()
        self._saves = SaveTracker()

    def load(self) -> bool:
        """Load the file, dropping expired failed entries; True if a valid file was loaded."""
        started = time.perf_counter()
        self._albums, self._failed, self._counts = {}, {}, {}
        with paused_gc():
            entries = load_json_or_quarantine(self.path, _parse_cache, what="api cache")
            if entries is None:
                return False
            dropped = self._fill(entries)
            freeze_if_big(len(entries))
        if dropped:
            self._saves.changed()
        log.info(
            "api_cache_loaded",
            path=str(self.path),
            entries=len(self),
            expired_dropped=dropped,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return True

    def _fill(self, entries: list[CachedApiResult]) -> int:
        """Index loaded entries, dropping expired ones; returns how many were dropped."""
        now = self._clock()
        # A million entries would thrash normalize_name's bounded lru_cache: memoise here, and
        # reuse the key of the previous entry, since an album's entries are stored together.
        names: dict[str, str] = {}
        last: tuple[str, str] | None = None
        key: AlbumKey = ("", "")
        dropped = 0
        for entry in entries:
            if not entry.success and entry.expires_at is None:
                entry = replace(entry, expires_at=entry.created_at + self.failed_ttl_seconds)
            if entry.expired(now):
                dropped += 1
                continue
            raw = (entry.artist, entry.album)
            if raw != last:
                last = raw
                artist = names.get(entry.artist)
                if artist is None:
                    artist = names[entry.artist] = normalize_name(entry.artist)
                album = names.get(entry.album)
                if album is None:
                    album = names[entry.album] = normalize_name(entry.album)
                key = (artist, album)
            # No capture can see these fresh dicts yet, so filling them in place is safe.
            sources = self._albums.setdefault(key, {})
            old = sources.get(entry.source)
            if old is not None:
                self._uncount(key, old)
            sources[entry.source] = entry
            self._count(key, entry)
        return dropped

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._failed) + sum(c[0] for c in self._counts.values())

    @property
    def dirty(self) -> bool:
        """True while some change is not yet written to disk."""
        return self._saves.dirty

    def get(self, artist: str, album: str, source: str) -> CachedApiResult | None:
        """The live entry for this album and source, or None (an expired one is dropped)."""
        src = normalize_source(source)
        key = album_key(artist, album)
        sources = self._albums.get(key)
        entry = sources.get(src) if sources is not None else None
        if entry is not None and entry.expired(self._clock()):
            self._remove(key, src)
            entry = None
        if entry is None:
            self._misses[src] += 1
        else:
            self._hits[src] += 1
        return entry

    def get_album(self, artist: str, album: str) -> dict[str, CachedApiResult]:
        """Every live entry of an album, by source (not counted as hits or misses)."""
        key = album_key(artist, album)
        sources = self._albums.get(key, {})
        now = self._clock()
        for src in [s for s, e in sources.items() if e.expired(now)]:
            self._remove(key, src)
        return dict(self._albums.get(key, {}))

    def stats(self) -> dict[str, Any]:
        """Counts and policies; O(sources), never a scan of the entries."""
        by_source: dict[str, dict[str, int]] = {}
        for src in sorted(self._counts.keys() | self._hits.keys() | self._misses.keys()):
            ok, failed = self._counts.get(src, (0, 0))
            by_source[src] = {
                "entries": ok + failed,
                "successful": ok,
                "failed": failed,
                "hits": self._hits[src],
                "misses": self._misses[src],
            }
        successful = sum(c[0] for c in self._counts.values())
        return {
            "total_entries": successful + len(self._failed),
            "successful": successful,
            "failed": len(self._failed),
            "albums": len(self._albums),
            "by_source": by_source,
            "hits": sum(self._hits.values()),
            "misses": sum(self._misses.values()),
            "cache_file": str(self.path),
            "cache_file_exists": self.path.exists(),
            "policies": {
                "successful": "kept until invalidated",
                "failed_ttl_seconds": self.failed_ttl_seconds,
            },
        }

    # -- mutating ----------------------------------------------------------------------------

    def put(
        self,
        artist: str,
        album: str,
        source: str,
        *,
        success: bool,
        data: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> CachedApiResult:
        """Store an answer, replacing any for the same album and source.

        Raises ValueError for an empty source and TypeError when `data` or `metadata` cannot
        be written as JSON (checked now, so one bad entry can never make every save fail).
        """
        src = normalize_source(source)
        if not src:
            raise ValueError("source must not be empty")
        metadata = {} if metadata is None else metadata
        orjson.dumps(data)
        orjson.dumps(metadata)
        now = self._clock()
        entry = CachedApiResult(
            artist=artist,
            album=album,
            source=src,
            success=success,
            data=data,
            metadata=metadata,
            created_at=now,
            expires_at=None if success else now + self.failed_ttl_seconds,
        )
        key = album_key(artist, album)
        sources = self._albums.get(key)
        if sources is None:
            self._albums[key] = {src: entry}
        else:
            old = sources.get(src)
            if old is not None:
                self._uncount(key, old)
            self._albums[key] = {**sources, src: entry}
        self._count(key, entry)
        self._saves.changed()
        return entry

    def invalidate_album(self, artist: str, album: str) -> int:
        """Drop every source's entry for an album; returns how many were dropped."""
        return self.invalidate_keys([album_key(artist, album)])

    def invalidate_keys(self, keys: Iterable[AlbumKey]) -> int:
        """Drop the entries of albums given by already normalised keys; returns the count."""
        removed = 0
        for key in keys:
            sources = self._albums.pop(key, None)
            if sources is not None:
                for entry in sources.values():
                    self._uncount(key, entry)
                removed += len(sources)
        if removed:
            self._saves.changed()
        return removed

    def clear(self) -> int:
        """Drop everything; returns how many entries there were."""
        count = len(self)
        self._albums, self._failed, self._counts = {}, {}, {}
        if count:
            self._saves.changed()
        return count

    def cleanup_expired(self) -> int:
        """Drop expired failed entries; O(failed entries). Returns how many were dropped."""
        now = self._clock()
        expired = [k for k, e in self._failed.items() if e.expired(now)]
        for key, src in expired:
            self._remove(key, src)
        return len(expired)

    def _remove(self, key: AlbumKey, src: str) -> None:
        sources = self._albums[key]
        entry = sources[src]
        rest = {s: e for s, e in sources.items() if s != src}
        if rest:
            self._albums[key] = rest
        else:
            del self._albums[key]
        self._uncount(key, entry)
        self._saves.changed()

    def _count(self, key: AlbumKey, entry: CachedApiResult) -> None:
        counts = self._counts.get(entry.source)
        if counts is None:
            counts = self._counts[entry.source] = [0, 0]
        if entry.success:
            counts[0] += 1
        else:
            counts[1] += 1
            self._failed[(key, entry.source)] = entry

    def _uncount(self, key: AlbumKey, entry: CachedApiResult) -> None:
        counts = self._counts[entry.source]
        if entry.success:
            counts[0] -= 1
        else:
            counts[1] -= 1
            del self._failed[(key, entry.source)]
        if counts == [0, 0]:
            del self._counts[entry.source]

    # -- saving ------------------------------------------------------------------------------

    def capture(self) -> ApiCacheSave:
        """What to write, taken now: one list of per-album dicts, no serialisation."""
        return ApiCacheSave(
            path=self.path,
            albums=list(self._albums.values()),
            revision=self._saves.revision,
            tracker=self._saves,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiCacheSave:
    """One captured state of the cache; `write()` runs in a worker thread."""

    path: Path
    albums: list[dict[str, CachedApiResult]]
    revision: int
    tracker: SaveTracker

    def write(self) -> bool:
        """Write the file atomically, or delete it when the cache is empty (stale data must not
        load at the next start). False if a newer capture was already written."""
        written = self.tracker.write_if_newer(self.revision, self._write)
        if not written:
            log.debug("api_cache_save_skipped", revision=self.revision)
        return written

    def _write(self) -> None:
        started = time.perf_counter()
        entries = [entry for sources in self.albums for entry in sources.values()]
        if not entries:
            if remove_durably(self.path):
                log.info("api_cache_file_removed", path=str(self.path), reason="empty")
            return
        # orjson writes the (slotted) dataclasses natively, in field order.
        data = _dumps_cache(entries)
        ensure_private_dir(self.path.parent)
        write_atomic(self.path, data)
        log.debug(
            "api_cache_saved",
            path=str(self.path),
            entries=len(entries),
            bytes=len(data),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )


def _dumps_cache(entries: list[CachedApiResult]) -> bytes:
    """The bytes of orjson.dumps({"version", "entries": entries}), built chunk by chunk."""
    head = orjson.dumps({"version": CACHE_VERSION, "entries": []})
    parts = [
        orjson.dumps(entries[i : i + _DUMP_CHUNK])[1:-1]
        for i in range(0, len(entries), _DUMP_CHUNK)
    ]
    return head[:-2] + b",".join(parts) + b"]}"


def _parse_cache(data: Any) -> list[CachedApiResult]:
    if type(data) is not dict:
        raise TypeError("api cache is not a JSON object")
    if data.get("version") != CACHE_VERSION:
        raise ValueError(f"unsupported api cache version {data.get('version')!r}")
    entries = data["entries"]
    if type(entries) is not list:
        raise TypeError("api cache entries is not a list")
    # An album's answers from each source repeat its names: keep one copy of each.
    seen: dict[str, str] = {}
    share = seen.setdefault
    for value in entries:
        if type(value) is dict:
            artist, album = value.get("artist"), value.get("album")
            if type(artist) is str and type(album) is str:
                value["artist"], value["album"] = share(artist, artist), share(album, album)
    return [CachedApiResult.from_dict(value) for value in entries]
