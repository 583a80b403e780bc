"""GenreUpdater's in-process cache API, backed by the daemon: a program switches by one import.

    from daemon.compat import ApiCacheService, TrackCacheManager
    # was: from services.cache.api_cache import ApiCacheService
    #      from core.tracks.cache_manager import TrackCacheManager

Same constructors, methods, attributes, sync/async shapes and return types as those classes at
GenreUpdater commit 54e8d51, for every call its code makes. The call sites checked:

- `services/cache/orchestrator.py`: `ApiCacheService(config, logger)`, `initialize()`,
  `invalidate_for_album()` then `event_manager.emit_event(CacheEvent(TRACK_MODIFIED, ...))` once
  per written track (its own CacheEvent class: matched by the type's value),
  `save_to_disk()` inside a `gather`, `invalidate_all()`, `{k: v.model_dump() for k, v in
  api_cache.items()}`, `get_cached_result(artist, album, source)`,
  `set_cached_result(artist, album, source=..., success=..., data=...)`, `shutdown()`.
- `services/api/orchestrator.py`: lookups from "musicbrainz", "discogs" and "itunes" through
  the orchestrator above, many at once in a `gather`.
- `app/music_updater.py`: `emit_track_removed(id, artist, album)` and
  `emit_track_modified(id, old_artist, old_album)` in loops over a delta.
- `core/tracks/track_processor.py`: `TrackCacheManager(cache_service=..., snapshot_service=...,
  console_logger=..., current_time_func=...)`, `get_cached_tracks(key)`, `can_use_snapshot()`
  (synchronous), `update_snapshot(tracks, processed_ids)`, `merge_tracks(existing, updates)`
  (by `track.id`), `load_snapshot()`.
- `app/pipeline_snapshot.py`: `update_snapshot(tracks, ids, library_mtime_override=...)`.

What the daemon adds: the answers are shared by every program and survive the run; the
snapshot comes from the daemon, current and with Music.app's `id` on each track; what loops and
`gather`s ask is sent in batch calls; `expect_writes` (and `expect_writes_sync`), called right
before a write, makes that write's echo come back with the host's name (daemon/compat/writes.py).
When the daemon is away the host is not failed: see daemon/compat/link.py. What differs from
the original is listed in the README ("Switching GenreUpdater to musicd").
"""

from daemon.compat.api_cache import (
    ApiCacheService,
    CachedApiResult,
    hash_api_key,
    result_from_entry,
)
from daemon.compat.policy import (
    CacheContentType,
    CacheEvent,
    CacheEventType,
    CachePolicy,
    EventDrivenCacheManager,
    SmartCacheConfig,
)
from daemon.compat.snapshot_state import LibraryCacheMetadata, LibraryDeltaCache
from daemon.compat.tracks import TrackCacheManager, TrackDict
from daemon.compat.writes import expect_writes, expect_writes_sync

__all__ = [
    "ApiCacheService",
    "CacheContentType",
    "CacheEvent",
    "CacheEventType",
    "CachePolicy",
    "CachedApiResult",
    "EventDrivenCacheManager",
    "LibraryCacheMetadata",
    "LibraryDeltaCache",
    "SmartCacheConfig",
    "TrackCacheManager",
    "TrackDict",
    "expect_writes",
    "expect_writes_sync",
    "hash_api_key",
    "result_from_entry",
]
