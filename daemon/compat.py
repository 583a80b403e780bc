"""The original application's in-process cache API, backed by the daemon: switch by changing one
import.

    from daemon.compat import ApiCacheService       # was: the in-process ApiCacheService

    cache = ApiCacheService()                       # or ApiCacheService(config, logger)
    await cache.initialize()
    hit = await cache.get_cached_result("Miles Davis", "Kind of Blue", "musicbrainz")
    await cache.set_cached_result("Miles Davis", "Kind of Blue", "musicbrainz", True,
                                  {"year": "1959"})

As in the original, the `year` in `data` decides what an entry is: with a non-empty year it is a
successful answer kept until invalidated, without one a failed lookup that is asked again after
the retry TTL, whatever `success` says. Entries are stored as `musicd import-cache` stores the
original's file (`data = {"year": ..., "api_response": ...}`), so imported entries read back as
the original wrote them. What differs (names match more spellings; every write is durable once
the call returns) is listed in the README ("Migrating from ApiCacheService").

Like the original, it is asyncio code: `emit_track_*` schedule the invalidation in a task, and
`shutdown()` waits for those.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel, Field

from daemon.client import AsyncMusicdClient, MusicdClient
from daemon.errors import DaemonError

# The original reported the successful answers' policy as a TTL this large ("forever").
INFINITE_TTL: Final = 10 * 365 * 24 * 3600
MAX_BACKGROUND_TASKS: Final = 100


class CachedApiResult(BaseModel):
    """One cached answer, with the original's fields."""

    artist: str
    album: str
    year: str | None
    source: str
    timestamp: float
    ttl: int | None = None  # seconds; None: kept until invalidated
    metadata: dict[str, Any] = Field(default_factory=dict)
    api_response: dict[str, Any] | None = None


def _year(data: Any) -> str | None:
    if isinstance(data, dict) and data.get("year") is not None:
        return str(data["year"]).strip() or None
    return None


def result_from_entry(entry: dict[str, Any]) -> CachedApiResult:
    """The original's view of a daemon cache entry."""
    data = entry.get("data")
    if isinstance(data, dict) and set(data) <= {"year", "api_response"}:
        # Written by this class or imported from the original's file.
        year, response = _year(data), data.get("api_response")
    else:
        # Written by another program through cache.put: the year is read the same way.
        year, response = _year(data), data if isinstance(data, dict) else None
    expires_at, created_at = entry.get("expires_at"), float(entry["created_at"])
    return CachedApiResult(
        artist=entry["artist"],
        album=entry["album"],
        year=year,
        source=entry["source"],
        timestamp=created_at,
        ttl=None if expires_at is None else round(float(expires_at) - created_at),
        metadata=entry.get("metadata") or {},
        api_response=response if isinstance(response, dict) else None,
    )


def _socket(socket_path: Any) -> str | os.PathLike[str] | None:
    # The original took (config, logger): an object that is not a path means "the default".
    if socket_path is None or isinstance(socket_path, str | os.PathLike):
        return socket_path
    return None


class ApiCacheService:
    """The original `ApiCacheService`, talking to the running daemon."""

    def __init__(self, socket_path: Any = None, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(__name__)
        self.socket_path = _socket(socket_path)
        self._client = AsyncMusicdClient(self.socket_path)
        self._background_tasks: set[asyncio.Task[Any]] = set()
        self._shutting_down = False
        self._stats_client: MusicdClient | None = None

    async def initialize(self) -> None:
        """Connect to the daemon (NotRunning when it is not running) and drop expired entries."""
        await self._client.connect()
        removed = await self.cleanup_expired()
        self.logger.info(
            "ApiCacheService connected to musicd (%d expired entries dropped)", removed
        )

    async def get_cached_result(
        self, artist: str, album: str, source: str
    ) -> CachedApiResult | None:
        entry = await self._client.cache_get(artist, album, source)
        return None if entry is None else result_from_entry(entry)

    async def set_cached_result(
        self,
        artist: str,
        album: str,
        source: str,
        success: bool,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        year = _year(data)
        stored = {"year": year, "api_response": dict(data) if data else None}
        # The year decides, as in the original: `success` is only logged.
        await self._client.cache_put(
            artist.strip(),
            album.strip(),
            source.strip(),
            success=year is not None,
            data=stored,
            metadata=metadata or {},
        )
        self.logger.debug(
            "Stored API result: %s - %s (%s) success=%s", artist, album, source, success
        )

    async def invalidate_for_album(self, artist: str, album: str) -> None:
        removed = await self._client.invalidate(artist, album)
        if removed:
            self.logger.info("Invalidated %d API cache entries for %s - %s", removed, artist, album)

    async def invalidate_all(self) -> None:
        removed = await self._client.cache_clear()
        self.logger.info("Cleared all API cache entries (%d items)", removed)

    async def cleanup_expired(self) -> int:
        return await self._client.cache_cleanup()

    async def save_to_disk(self) -> None:
        """Every write is committed when its call returns; this also checkpoints the database
        (durable against a power cut)."""
        await self._client.flush()

    def emit_track_removed(self, track_id: str, artist: str, album: str) -> None:
        if track_id and artist and album:
            self._schedule_invalidation(artist, album)

    def emit_track_modified(self, track_id: str, old_artist: str, old_album: str) -> None:
        if track_id and old_artist and old_album:
            self._schedule_invalidation(old_artist, old_album)

    def _schedule_invalidation(self, artist: str, album: str) -> bool:
        if self._shutting_down or len(self._background_tasks) >= MAX_BACKGROUND_TASKS:
            self.logger.debug("Skipping invalidation for %s - %s", artist, album)
            return False
        task = asyncio.get_running_loop().create_task(self.invalidate_for_album(artist, album))
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)
        return True

    async def shutdown(self) -> None:
        """Refuse new background work, wait for what is pending, close the connection."""
        self._shutting_down = True
        if self._background_tasks:
            await asyncio.gather(*self._background_tasks, return_exceptions=True)
        self._background_tasks.clear()
        await self._client.aclose()
        if self._stats_client is not None:
            self._stats_client.close()

    def get_stats(self) -> dict[str, Any]:
        """The original's keys. Synchronous like the original: a short blocking call."""
        if self._stats_client is None:
            self._stats_client = MusicdClient(self.socket_path)
        try:
            cache = self._stats_client.stats()["cache"]
        except DaemonError:
            self._stats_client.close()
            raise
        return {
            "total_entries": cache["total_entries"],
            "successful_responses": cache["successful"],
            "failed_lookups": cache["failed"],
            "cache_file": cache["cache_file"],
            "cache_file_exists": cache["cache_file_exists"],
            "successful_policy": INFINITE_TTL,
            "failed_policy": cache["policies"]["failed_ttl_seconds"],
            "persistent": True,
        }


def _track_id(track: Any) -> str:
    if isinstance(track, dict):
        return str(track.get("persistent_id", track.get("id")))
    return str(getattr(track, "persistent_id", None) or track.id)


class TrackCacheManager:
    """The original's snapshot reads: the whole library (from the daemon), and the merge."""

    def __init__(self, socket_path: Any = None, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(__name__)
        self.socket_path = _socket(socket_path)
        # The journal position the last `load_snapshot` read at: follow changes from here.
        self.cursor: str | None = None

    async def load_snapshot(self) -> list[dict[str, Any]] | None:
        """Every track (dicts of the snapshot's fields), or None when the daemon is not there."""
        tracks: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            async with AsyncMusicdClient(self.socket_path) as client:
                async for page in client.iter_track_pages(limit=10000):
                    cursor = cursor or page["cursor"]
                    tracks.extend(page["tracks"])
        except DaemonError as err:
            self.logger.debug("Snapshot not available: %s", err)
            return None
        self.cursor = cursor
        return tracks

    @staticmethod
    def merge_tracks(existing: Sequence[Any], updates: Sequence[Any]) -> list[Any]:
        """Updated tracks replace theirs in place; new ones follow, in the order given."""
        update_map = {_track_id(t): t for t in updates}
        merged: list[Any] = []
        seen: set[str] = set()
        for track in existing:
            track_id = _track_id(track)
            merged.append(update_map.get(track_id, track))
            seen.add(track_id)
        for track in updates:
            track_id = _track_id(track)
            if track_id not in seen:
                merged.append(track)
                seen.add(track_id)
        return merged

    def can_use_snapshot(self) -> bool:
        """Whether the daemon answers (and so has a snapshot to read)."""
        try:
            with MusicdClient(self.socket_path, timeout=5.0) as client:
                client.ping()
        except DaemonError:
            return False
        return True
