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
from typing import Any

import structlog

from daemon import __version__
from daemon.control.api import DaemonApi
from daemon.control.params import (
    AlbumParams,
    CacheKeyParams,
    CachePutParams,
    NoParams,
    RescanParams,
    TrackParams,
)
from daemon.control.protocol import FLUSH_FAILED, INVALID_PARAMS, SCAN_FAILED, ProtocolError
from daemon.errors import StateError

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

    def __init__(self, daemon: DaemonApi, control_stats: Callable[[], dict[str, Any]]) -> None:
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
                "cache": await self.daemon.stats(),
                "events": {
                    "emitted": dict(sorted(hub.emitted.items())),
                    "total": sum(hub.emitted.values()),
                    "last_seq": self.daemon.last_seq,
                },
                "subscribers": hub.subscriber_count,
                "consumers": self.daemon.programs.consumers(),
                "control": self.control_stats(),
            }
        )

    async def flush(self, params: NoParams) -> Reply:
        try:
            result = await self.daemon.flush("requested")
        except StateError as err:
            raise ProtocolError(
                FLUSH_FAILED,
                f"flush failed: {err}; every acknowledged write is still committed, and the "
                "checkpoint is retried by itself",
            ) from None
        return Reply(result)

    async def rescan(self, params: RescanParams) -> Reply:
        started = time.perf_counter()
        outcome = await self.daemon.rescan(accept_removals=params.accept_removals)
        if not outcome.ok:
            raise ProtocolError(SCAN_FAILED, f"rescan failed: {outcome.error}")
        result = outcome.as_dict()
        result["duration_ms"] = ms_since(started)
        return Reply(result)

    async def track(self, params: TrackParams) -> Reply:
        return Reply(self.daemon.track(params.persistent_id))

    async def album(self, params: AlbumParams) -> Reply:
        return Reply(self.daemon.album(params.artist, params.album))

    async def cache_get(self, params: CacheKeyParams) -> Reply:
        return Reply(self.daemon.cache_get(params.artist, params.album, params.source))

    async def cache_put(self, params: CachePutParams) -> Reply:
        try:
            entry = await self.daemon.cache_put(
                params.artist,
                params.album,
                params.source,
                success=params.success,
                data=params.data,
                metadata=params.metadata,
                ttl_seconds=params.ttl_seconds,
            )
        except (TypeError, ValueError) as err:
            raise ProtocolError(INVALID_PARAMS, f"cache.put: {err}") from None
        return Reply(entry)

    async def cache_invalidate(self, params: AlbumParams) -> Reply:
        removed = await self.daemon.cache_invalidate(params.artist, params.album)
        log.info(
            "cache_invalidated",
            artist=params.artist,
            album=params.album,
            entries=removed,
            reason="requested",
        )
        return Reply({"removed": removed})

    async def cache_clear(self, params: NoParams) -> Reply:
        removed = await self.daemon.cache_clear()
        log.info("cache_cleared", entries=removed)
        return Reply({"removed": removed})

    async def shutdown(self, params: NoParams) -> Reply:
        # Answered first; the daemon starts stopping once the answer is written.
        return Reply(
            {"stopping": True, "pid": os.getpid()},
            after=partial(self.daemon.request_shutdown, "control"),
        )
