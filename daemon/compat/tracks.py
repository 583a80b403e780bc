"""The original `TrackCacheManager`, reading the library snapshot from the daemon.

The original loads a snapshot file its own program wrote and trusts it while its library's
mtime says so. Here `load_snapshot()` first asks the daemon, which keeps the snapshot in step
with the library all the time, and answers with the host's own snapshot service (the original
behaviour) when the daemon is away, has not finished a read, or cannot give each track
Music.app's `id` (the XML reader has no such number: see the README, "Music.app's own ids").
Everything else is the original's, on the services the host passes in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from daemon.client import AsyncMusicdClient
from daemon.compat.link import locate
from daemon.compat.snapshot_state import LibraryCacheMetadata, LibraryDeltaCache
from daemon.errors import DaemonError

PAGE: int = 10000


class TrackDict(BaseModel):
    """A track in the original's shape (its `TrackDict` fields; others are kept as extras)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    artist: str
    album: str
    genre: str | None = None
    year: str | None = None
    date_added: str | None = None
    last_modified: str | None = None
    track_status: str | None = None
    original_artist: str | None = None
    original_album: str | None = None
    year_before_mgu: str | None = None
    year_set_by_mgu: str | None = None
    release_year: str | None = None
    original_pos: int | None = None
    album_artist: str | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """dict.get(): a missing or None value gives `default`."""
        value = getattr(self, key, None)
        if value is None and self.model_extra is not None:
            value = self.model_extra.get(key)
        return default if value is None else value

    def copy(self, **kwargs: Any) -> TrackDict:
        return self.model_copy(update=kwargs)


def track_from_snapshot(track: dict[str, Any]) -> TrackDict:
    """A daemon snapshot track as the original's TrackDict; `id` is Music.app's `id`."""
    year = track.get("year")
    return TrackDict(
        id=str(track["music_id"]),
        name=track.get("name") or "",
        artist=track.get("artist") or "",
        album=track.get("album") or "",
        genre=track.get("genre"),
        year=None if year is None else str(year),
        date_added=track.get("date_added"),
        last_modified=track.get("date_modified"),
        album_artist=track.get("album_artist"),
        persistent_id=track["persistent_id"],
        database_id=track.get("database_id"),
    )


def _is_track(item: Any) -> dict[str, Any] | None:
    """The original's validation of a cached track: the fields it requires, as text."""
    if hasattr(item, "model_dump"):
        item = item.model_dump()
    if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
        return None
    if any(not isinstance(item.get(name), str) for name in ("id", "artist", "name", "album")):
        return None
    optional = ("genre", "year", "date_added", "track_status")
    if any(item.get(n) is not None and not isinstance(item[n], str) for n in optional):
        return None
    return dict(item)


def _track_id(track: Any) -> str:
    return str(track["id"] if isinstance(track, dict) else track.id)


class TrackCacheManager:
    """The original `TrackCacheManager(cache_service, snapshot_service, console_logger,
    current_time_func)`."""

    def __init__(
        self,
        cache_service: Any = None,
        snapshot_service: Any = None,
        console_logger: logging.Logger | None = None,
        current_time_func: Callable[[], datetime] | None = None,
        *,
        socket_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.cache_service = cache_service
        self.snapshot_service = snapshot_service
        self.console_logger = console_logger or logging.getLogger(__name__)
        self._current_time_func = current_time_func or (lambda: datetime.now(UTC))
        self.socket_path, _ = locate(socket_path)
        # The journal position the last snapshot from the daemon was read at.
        self.cursor: str | None = None

    def _current_time(self) -> datetime:
        return self._current_time_func()

    async def get_cached_tracks(self, cache_key: str) -> Sequence[TrackDict] | None:
        cached = await self.cache_service.get_async(cache_key)
        if cached is None:
            return None
        if not isinstance(cached, list):
            self.console_logger.warning(
                "Cached data for %s is not a list (got %s). Ignoring cache.",
                cache_key,
                type(cached).__name__,
            )
            return None
        tracks: list[TrackDict] = []
        for i, item in enumerate(cached):
            fields = _is_track(item)
            if fields is None:
                self.console_logger.warning(
                    "Cached data for %s contains invalid track dict at index %d. Ignoring cache.",
                    cache_key,
                    i,
                )
                return None
            tracks.append(TrackDict.model_validate(fields))
        return tracks

    async def load_snapshot(self) -> list[TrackDict] | None:
        """The daemon's snapshot when it can give one, else the host's (if valid)."""
        if self.snapshot_service is None:
            return None
        tracks = await self._daemon_snapshot()
        if tracks is not None:
            return tracks
        snapshot_tracks: list[TrackDict] | None = await self.snapshot_service.load_snapshot()
        if snapshot_tracks is None:
            self.console_logger.debug("Snapshot cache missing on disk")
            return None
        if await self.snapshot_service.is_snapshot_valid():
            return snapshot_tracks
        self.console_logger.debug("Snapshot exists but is stale")
        return None

    async def _daemon_snapshot(self) -> list[TrackDict] | None:
        tracks: list[TrackDict] = []
        cursor: str | None = None
        try:
            async with AsyncMusicdClient(self.socket_path) as client:
                status = await client.status()
                library = status["library"]
                if status.get("last_scan_at") is None or library.get("reader_error"):
                    self.console_logger.debug("musicd has no current snapshot yet")
                    return None
                async for page in client.iter_track_pages(limit=PAGE):
                    cursor = cursor or page["cursor"]
                    for track in page["tracks"]:
                        if track.get("music_id") is None:
                            self.console_logger.debug(
                                "musicd's snapshot has no Music.app ids (library.source = "
                                '"%s"): using this program\'s own snapshot',
                                library.get("source"),
                            )
                            return None
                        tracks.append(track_from_snapshot(track))
        except (DaemonError, OSError, KeyError, ValidationError) as err:
            self.console_logger.debug("musicd's snapshot is not available: %s", err)
            return None
        self.cursor = cursor
        return tracks

    @staticmethod
    def merge_tracks(existing: Sequence[Any], updates: Sequence[Any]) -> list[Any]:
        """Updated tracks (same `id`) replace theirs in place; new ones follow, in order."""
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

    async def update_snapshot(
        self,
        tracks: list[Any],
        processed_track_ids: Sequence[str] | None = None,
        *,
        library_mtime_override: datetime | None = None,
    ) -> None:
        """The original's: the host's snapshot, metadata and delta state. The daemon keeps
        its own snapshot from the library and needs nothing from here."""
        service = self.snapshot_service
        if service is None or not service.is_enabled():
            return
        snapshot_hash = await service.save_snapshot(tracks)
        now = self._current_time()
        library_mtime = library_mtime_override or await service.get_library_mtime()
        # The last forced full scan is kept across updates, as the original does.
        existing = await service.get_snapshot_metadata()
        metadata = LibraryCacheMetadata(
            last_full_scan=now,
            library_mtime=library_mtime,
            track_count=len(tracks),
            snapshot_hash=snapshot_hash,
            last_force_scan_time=existing.last_force_scan_time if existing else None,
        )
        await service.update_snapshot_metadata(metadata)
        if not service.is_delta_enabled():
            return
        delta = await service.load_delta()
        if delta is None:
            delta = LibraryDeltaCache(last_run=now)
        delta.last_run = now
        ids = [str(i) for i in processed_track_ids or () if str(i)]
        if ids:
            delta.add_processed_ids(ids)
        await service.save_delta(delta)

    def can_use_snapshot(self) -> bool:
        """The original's rule, without asking the daemon (no call waits on the socket)."""
        return self.snapshot_service is not None and bool(self.snapshot_service.is_enabled())
