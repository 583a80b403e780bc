"""What each control method does with the daemon's state (all but `subscribe`, which belongs to
a connection and lives in server.py).

A method gets its validated params model and returns a Reply; it raises ProtocolError for an
answer that is an error (flush failed, scan failed, a value the cache refuses).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from daemon import __version__
from daemon.control.protocol import (
    FLUSH_FAILED,
    INVALID_PARAMS,
    SCAN_FAILED,
    AlbumParams,
    CacheKeyParams,
    CachePutParams,
    NoParams,
    ProtocolError,
    RescanParams,
    TrackParams,
)

if TYPE_CHECKING:
    from daemon.app import Daemon

log = structlog.get_logger(__name__)


@dataclass
class Reply:
    result: Any
    # Runs after the answer is written (start forwarding events, stop the daemon).
    after: Callable[[], None] | None = None


Method = Callable[[Any], Awaitable[Reply]]


def ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class DaemonMethods:
    """The methods that read or change the stores; `control_stats` adds the server's counters."""

    def __init__(self, daemon: Daemon, control_stats: Callable[[], dict[str, Any]]) -> None:
        self.daemon = daemon
        self.control_stats = control_stats

    def table(self) -> dict[str, Method]:
        return {
            "ping": self.ping,
            "status": self.status,
            "stats": self.stats,
            "flush": self.flush,
            "rescan": self.rescan,
            "tracks.get": self.track,
            "tracks.album": self.album,
            "cache.get": self.cache_get,
            "cache.put": self.cache_put,
            "cache.invalidate": self.cache_invalidate,
            "cache.clear": self.cache_clear,
            "shutdown": self.shutdown,
        }

    async def ping(self, params: NoParams) -> Reply:
        return Reply({"pong": True, "pid": os.getpid(), "version": __version__})

    async def status(self, params: NoParams) -> Reply:
        status = self.daemon.status()
        status["connections"] = self.control_stats()["connections_open"]
        return Reply(status)

    async def stats(self, params: NoParams) -> Reply:
        hub = self.daemon.hub
        return Reply(
            {
                "cache": self.daemon.cache.stats(),
                "events": {
                    "emitted": dict(sorted(hub.emitted.items())),
                    "total": sum(hub.emitted.values()),
                    "last_seq": self.daemon.sequencer.last,
                },
                "subscribers": hub.subscriber_count,
                "control": self.control_stats(),
            }
        )

    async def flush(self, params: NoParams) -> Reply:
        started = time.perf_counter()
        daemon = self.daemon
        # Said in the answer, so `musicd flush` reports what happened, not what might have.
        had_changes = daemon.snapshot.dirty or daemon.cache.dirty
        if not await daemon.flush("requested"):
            error = daemon.flush_status.flush_error or "unknown error"
            raise ProtocolError(
                FLUSH_FAILED,
                f"flush failed: {error}; the state is kept in memory and written as soon as "
                "the problem is fixed",
            )
        return Reply(
            {
                "flushed": True,
                "duration_ms": ms_since(started),
                "last_flush_at": daemon.flush_status.last_flush_at,
                "dirty": daemon.snapshot.dirty or daemon.cache.dirty,
                "wrote": had_changes,
                "did": "wrote the unsaved changes to disk"
                if had_changes
                else "nothing to write: the files on disk were already up to date",
            }
        )

    async def rescan(self, params: RescanParams) -> Reply:
        started = time.perf_counter()
        outcome = await self.daemon.rescan(accept_removals=params.accept_removals)
        if not outcome.ok:
            raise ProtocolError(SCAN_FAILED, f"rescan failed: {outcome.error}")
        result = outcome.as_dict()
        result["duration_ms"] = ms_since(started)
        return Reply(result)

    async def track(self, params: TrackParams) -> Reply:
        track = self.daemon.snapshot.get(params.persistent_id)
        return Reply(track.to_dict() if track is not None else None)

    async def album(self, params: AlbumParams) -> Reply:
        tracks = self.daemon.snapshot.album_tracks(params.artist, params.album)
        return Reply([t.to_dict() for t in tracks])

    async def cache_get(self, params: CacheKeyParams) -> Reply:
        entry = self.daemon.cache.get(params.artist, params.album, params.source)
        return Reply(entry.to_dict() if entry is not None else None)

    async def cache_put(self, params: CachePutParams) -> Reply:
        sources = self.daemon.config.cache.sources
        if "*" not in sources and params.source.strip().lower() not in sources:
            raise ProtocolError(
                INVALID_PARAMS,
                f"cache.put: unknown source {params.source!r}; known sources: "
                f"{', '.join(sources)} (add one with cache.sources in the config)",
            )
        try:
            entry = self.daemon.cache.put(
                params.artist,
                params.album,
                params.source,
                success=params.success,
                data=params.data,
                metadata=params.metadata,
            )
        except (TypeError, ValueError) as err:
            raise ProtocolError(INVALID_PARAMS, f"cache.put: {err}") from None
        self.daemon.mark_dirty()
        return Reply(entry.to_dict())

    async def cache_invalidate(self, params: AlbumParams) -> Reply:
        removed = self.daemon.cache.invalidate_album(params.artist, params.album)
        if removed:
            self.daemon.mark_dirty()
        log.info(
            "cache_invalidated",
            artist=params.artist,
            album=params.album,
            entries=removed,
            reason="requested",
        )
        return Reply({"removed": removed})

    async def cache_clear(self, params: NoParams) -> Reply:
        removed = self.daemon.cache.clear()
        if removed:
            self.daemon.mark_dirty()
        log.info("cache_cleared", entries=removed)
        return Reply({"removed": removed})

    async def shutdown(self, params: NoParams) -> Reply:
        # Answered first; the daemon starts stopping once the answer is written.
        return Reply(
            {"stopping": True, "pid": os.getpid()},
            after=partial(self.daemon.request_shutdown, "control"),
        )
