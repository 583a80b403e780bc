"""The original `ApiCacheService`, backed by the daemon (see daemon/compat/__init__.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, Field

from daemon.compat.batches import Coalescer
from daemon.compat.link import DaemonAway, DaemonLink, Key
from daemon.compat.policy import (
    AnyCacheEvent,
    CacheContentType,
    CacheEvent,
    CacheEventType,
    EventDrivenCacheManager,
    SmartCacheConfig,
)
from daemon.errors import DaemonError
from daemon.models import album_key

# A repeated invalidation of an album this program invalidated this recently, with no answer
# stored for it since, changes nothing it can see: it is not sent again (GenreUpdater
# invalidates an album once per written track, twice).
REPEAT_SECONDS: Final = 5.0


class CachedApiResult(BaseModel):
    """One cached answer, with the original's fields (mutable, as the original's is)."""

    artist: str
    album: str
    year: str | None
    source: str
    timestamp: float
    ttl: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    api_response: dict[str, Any] | None = None


def hash_api_key(artist: str, album: str, source: str) -> str:
    """The original's key of `api_cache` (its UnifiedHashService.hash_api_key)."""
    parts = [(text.strip().lower() if text else "") for text in (source, artist, album)]
    return hashlib.sha256(f"{parts[0]}:{parts[1]}|{parts[2]}".encode()).hexdigest()


def _year(data: Any) -> str | None:
    if isinstance(data, dict) and data.get("year") is not None:
        return str(data["year"]).strip() or None
    return None


def result_from_entry(entry: dict[str, Any]) -> CachedApiResult:
    """The original's view of a daemon cache entry (stored by this class, imported from the
    original's file, or put by another program: the year is read the same way)."""
    data = entry.get("data")
    if isinstance(data, dict) and set(data) <= {"year", "api_response"}:
        year, response = _year(data), data.get("api_response")
    else:
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


def _socket(config: Any, socket_path: Any) -> str | os.PathLike[str] | None:
    # Earlier versions took the socket path first: a path there still means the socket.
    if socket_path is None and isinstance(config, str | os.PathLike):
        return config
    return socket_path if isinstance(socket_path, str | os.PathLike) else None


class ApiCacheService:
    """The original `ApiCacheService(config, logger)`: the entries this run has read or
    written are in `api_cache` (keyed as the original keys them), the daemon holds them all."""

    def __init__(
        self,
        config: Any = None,
        logger: logging.Logger | None = None,
        *,
        socket_path: str | os.PathLike[str] | None = None,
        link: DaemonLink | None = None,
    ) -> None:
        self.config = config
        self.logger = logger or logging.getLogger(__name__)
        self.cache_config = SmartCacheConfig(
            None if isinstance(config, str | os.PathLike) else config
        )
        self.event_manager = EventDrivenCacheManager(self.cache_config)
        self.api_cache: dict[str, CachedApiResult] = {}
        self._background_tasks: set[asyncio.Task[Any]] = set()
        self._max_background_tasks = 100
        self._shutting_down = False
        self.link = link or DaemonLink(_socket(config, socket_path), self.logger)
        # What one turn of the loop asks goes out as one batch call (batches.py).
        self._get = Coalescer(self._send_gets)
        self._invalidate = Coalescer(self._send_invalidations)
        self._invalidated_at: dict[tuple[str, str], float] = {}
        # Moves on each invalidation: an answer fetched across one is returned, not kept.
        self._invalidations = 0
        self.event_manager.register_event_handler(
            CacheEventType.TRACK_REMOVED, self._handle_track_removed
        )
        self.event_manager.register_event_handler(
            CacheEventType.TRACK_MODIFIED, self._handle_track_modified
        )

    @property
    def api_cache_file(self) -> Path:
        """The original's cache file: here the daemon's database (read while it is away)."""
        return self.link.database

    # -- the original's background invalidations ---------------------------------------------

    def _schedule_invalidation(
        self, artist: str, album: str, log_message: str | None = None
    ) -> bool:
        if self._shutting_down:
            self.logger.debug(
                "Shutdown in progress, skipping invalidation for %s - %s", artist, album
            )
            return False
        if len(self._background_tasks) >= self._max_background_tasks:
            self.logger.debug(
                "Background task limit reached (%d), skipping invalidation for %s - %s",
                self._max_background_tasks,
                artist,
                album,
            )
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # The original's create_task raised here and its event manager logged it.
            self.logger.error(
                "No running event loop: invalidation of %s - %s skipped", artist, album
            )
            return False
        if log_message:
            self.logger.info(log_message)
        task = loop.create_task(self.invalidate_for_album(artist, album))
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)
        return True

    def _handle_track_removed(self, event: AnyCacheEvent) -> None:
        if event.track_id and event.metadata:
            artist, album = event.metadata.get("artist"), event.metadata.get("album")
            if isinstance(artist, str) and isinstance(album, str) and artist and album:
                self._schedule_invalidation(artist, album)

    def _handle_track_modified(self, event: AnyCacheEvent) -> None:
        if event.track_id and event.metadata:
            artist, album = event.metadata.get("artist"), event.metadata.get("album")
            if isinstance(artist, str) and isinstance(album, str) and artist and album:
                self._schedule_invalidation(
                    artist,
                    album,
                    f"Track {event.track_id} identity changed, invalidating cache for: "
                    f"{artist} - {album}",
                )

    def emit_track_removed(self, track_id: str, artist: str, album: str) -> None:
        self.event_manager.emit_event(
            CacheEvent(
                CacheEventType.TRACK_REMOVED, track_id, metadata={"artist": artist, "album": album}
            )
        )

    def emit_track_modified(self, track_id: str, old_artist: str, old_album: str) -> None:
        self.event_manager.emit_event(
            CacheEvent(
                CacheEventType.TRACK_MODIFIED,
                track_id,
                metadata={"artist": old_artist, "album": old_album},
            )
        )

    # -- the API -------------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Reach the daemon (a warning, never an error, when it is away) and drop what the
        policies say has expired."""
        self.logger.info("Initializing ApiCacheService...")
        await self.link.reach()
        await self.cleanup_expired()
        self.logger.info(
            "ApiCacheService initialized with %d entries (after cleanup)", len(self.api_cache)
        )

    async def get_cached_result(
        self, artist: str, album: str, source: str
    ) -> CachedApiResult | None:
        key = hash_api_key(artist, album, source)
        cached = self.api_cache.get(key)
        if cached is None:
            invalidations = self._invalidations
            entry = await self._get((artist, album, source))
            if entry is None:
                self.logger.debug("API cache miss: %s - %s (%s)", artist, album, source)
                return None
            cached = result_from_entry(entry)
            if invalidations == self._invalidations:
                cached = self.api_cache.setdefault(key, cached)
        if self._is_cache_expired(cached):
            self.logger.debug("API cache expired: %s - %s (%s)", artist, album, source)
            self.api_cache.pop(key, None)
            return None
        self.logger.debug("API cache hit: %s - %s (%s)", artist, album, source)
        return cached

    def _is_cache_expired(self, cached: CachedApiResult) -> bool:
        """The year decides what an entry is, the policy in force now decides its life."""
        has_year = cached.year is not None and cached.year.strip()
        kind = (
            CacheContentType.SUCCESSFUL_API_METADATA
            if has_year
            else CacheContentType.FAILED_API_LOOKUP
        )
        ttl = self.cache_config.get_policy(kind).ttl_seconds
        if ttl >= self.cache_config.INFINITE_TTL:
            return False
        return time.time() - cached.timestamp > ttl

    async def set_cached_result(
        self,
        artist: str,
        album: str,
        *,
        source: str,
        success: bool,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        year = _year(data)
        response = dict(data) if data else None
        result = CachedApiResult(
            artist=artist.strip(),
            album=album.strip(),
            year=year,
            source=source.strip(),
            timestamp=datetime.now(UTC).timestamp(),
            metadata=metadata or {},
            api_response=response,
        )
        self.api_cache[hash_api_key(artist, album, source)] = result
        self._invalidated_at.pop(album_key(artist, album), None)
        failed_ttl = self.cache_config.get_policy(CacheContentType.FAILED_API_LOOKUP).ttl_seconds
        # The year decides, as in the original; `success` is only logged. A failed lookup
        # lives in the daemon as long as the policy says now, and is judged again when read.
        await self.link.put(
            {
                "artist": result.artist,
                "album": result.album,
                "source": result.source,
                "success": year is not None,
                "data": {"year": year, "api_response": response},
                "metadata": result.metadata,
                "ttl_seconds": None if year is not None else float(failed_ttl),
            }
        )
        self.logger.debug(
            "Stored API result: %s - %s (%s) success=%s", artist, album, source, success
        )

    async def invalidate_for_album(self, artist: str, album: str) -> None:
        self._invalidations += 1
        wanted = album_key(artist, album)
        stale = [
            key
            for key, cached in self.api_cache.items()
            if album_key(cached.artist, cached.album) == wanted
        ]
        for key in stale:
            del self.api_cache[key]
        sent = self._invalidated_at.get(wanted)
        if sent is None or time.monotonic() - sent > REPEAT_SECONDS:
            await self._invalidate((artist, album))
            self._invalidated_at[wanted] = time.monotonic()
        if stale:
            self.logger.info(
                "Invalidated %d API cache entries for %s - %s", len(stale), artist, album
            )

    async def invalidate_all(self) -> None:
        count = len(self.api_cache)
        self._invalidations += 1
        self.api_cache.clear()
        self._invalidated_at.clear()
        removed = await self.link.clear()
        self.logger.warning(
            "Cleared all API cache entries (%d items): musicd's cache is shared, so every "
            "program using it lost its %d answers too",
            count,
            removed,
        )

    async def cleanup_expired(self) -> int:
        """Drop the entries the policies in force call expired; the daemon drops its own."""
        expired = [key for key, cached in self.api_cache.items() if self._is_cache_expired(cached)]
        for key in expired:
            del self.api_cache[key]
        try:
            await self.link.call(lambda client: client.cache_cleanup())
        except (DaemonAway, DaemonError) as err:
            self.logger.debug("musicd did not clean up: %s", err)
        if expired:
            self.logger.info("Cleaned up %d expired API cache entries", len(expired))
        return len(expired)

    async def save_to_disk(self) -> None:
        """Every write reached the daemon's database when its call returned (or waits in
        memory while it is away, sent here if it is back); this also checkpoints it."""
        try:
            await self.link.call(lambda client: client.flush())
        except (DaemonAway, DaemonError) as err:
            self.logger.debug("API cache kept in memory until musicd answers: %s", err)

    async def shutdown(self) -> None:
        """Refuse new background work, wait for what is pending, close the connection."""
        self._shutting_down = True
        if self._background_tasks:
            await asyncio.gather(*self._background_tasks, return_exceptions=True)
        self._background_tasks.clear()
        await self._get.drain()
        await self._invalidate.drain()
        await self.link.close()

    def get_stats(self) -> dict[str, Any]:
        """The original's keys. The counts are the daemon database's (read-only, local),
        or this run's entries when there is no database."""
        counts = self.link.file_counts()
        if counts is None:
            ok = sum(1 for c in self.api_cache.values() if c.year is not None and c.year.strip())
            counts = (ok, len(self.api_cache) - ok)
        policy = self.cache_config.get_policy
        return {
            "total_entries": counts[0] + counts[1],
            "successful_responses": counts[0],
            "failed_lookups": counts[1],
            "cache_file": str(self.api_cache_file),
            "cache_file_exists": self.api_cache_file.exists(),
            "successful_policy": policy(CacheContentType.SUCCESSFUL_API_METADATA).ttl_seconds,
            "failed_policy": policy(CacheContentType.FAILED_API_LOOKUP).ttl_seconds,
            "persistent": self.cache_config.is_persistent_cache(
                CacheContentType.SUCCESSFUL_API_METADATA
            ),
        }

    # -- batches -------------------------------------------------------------------------------

    async def _send_gets(self, keys: list[Key]) -> list[dict[str, Any] | None]:
        try:
            return await self.link.get_many(keys)
        except DaemonError as err:
            # Never the host's problem: the original could not fail here.
            self.logger.warning("musicd could not answer %d lookups: %s", len(keys), err)
            return [None] * len(keys)

    async def _send_invalidations(self, pairs: list[tuple[str, str]]) -> list[None]:
        albums = list({album_key(*pair): pair for pair in pairs}.values())
        try:
            await self.link.invalidate(albums)
        except DaemonError as err:
            self.logger.warning("musicd could not invalidate %d albums: %s", len(albums), err)
        return [None] * len(pairs)
