"""What each control method does with the daemon's state (all but `subscribe`, which belongs to
a connection and lives in subscriptions.py).

A handler is marked with the control method it answers (`@handles("cache.get")`); the server
checks the handlers against daemon/control/spec.py when it is built. A handler gets its validated
params model and returns a Reply; it raises ProtocolError for an answer that is an error (flush
failed, scan failed, a value the cache refuses).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from daemon import __version__
from daemon.control.api import DaemonApi
from daemon.control.params import (
    AlbumParams,
    AlbumsParams,
    CacheKeyParams,
    CachePutParams,
    NoParams,
    RescanParams,
    TrackParams,
)
from daemon.control.protocol import FLUSH_FAILED, INVALID_PARAMS, SCAN_FAILED, ProtocolError
from daemon.errors import StateError


@dataclass
class Reply:
    result: Any
    # Runs after the answer is written (start forwarding events, stop the daemon).
    after: Callable[[], None] | None = None
    # What the request did, added to its one canonical log line (`request_handled`, logged at
    # info within the clients' allowance, see log_limit.py): a handler logs nothing itself.
    log: dict[str, Any] | None = None


Method = Callable[[Any], Awaitable[Reply]]
H = TypeVar("H", bound=Callable[..., Awaitable[Reply]])
_HANDLES = "_control_method"


def handles(method: str) -> Callable[[H], H]:
    """Mark a handler as the one of control `method` (its class's `table` finds it)."""

    def mark(handler: H) -> H:
        setattr(handler, _HANDLES, method)
        return handler

    return mark


class Handlers:
    """A set of handlers marked with `handles`."""

    def table(self) -> dict[str, Method]:
        """Control method name: bound handler."""
        found: dict[str, Method] = {}
        for attr in dir(type(self)):
            method = getattr(getattr(type(self), attr), _HANDLES, None)
            if method is not None:
                found[method] = getattr(self, attr)
        return found


def ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class DaemonMethods(Handlers):
    """The methods that read or change the stores; `control_stats` adds the server's counters."""

    def __init__(self, daemon: DaemonApi, control_stats: Callable[[], dict[str, Any]]) -> None:
        self.daemon = daemon
        self.control_stats = control_stats

    @handles("ping")
    async def ping(self, params: NoParams) -> Reply:
        return Reply({"pong": True, "pid": os.getpid(), "version": __version__})

    @handles("status")
    async def status(self, params: NoParams) -> Reply:
        status = self.daemon.status()
        status["connections"] = self.control_stats()["connections_open"]
        return Reply(status)

    @handles("stats")
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

    @handles("flush")
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

    @handles("rescan")
    async def rescan(self, params: RescanParams) -> Reply:
        started = time.perf_counter()
        outcome = await self.daemon.rescan(accept_removals=params.accept_removals)
        if not outcome.ok:
            raise ProtocolError(SCAN_FAILED, f"rescan failed: {outcome.error}")
        result = outcome.as_dict()
        result["duration_ms"] = ms_since(started)
        return Reply(result)

    @handles("tracks.get")
    async def track(self, params: TrackParams) -> Reply:
        return Reply(self.daemon.track(*params.lookup()))

    @handles("tracks.album")
    async def album(self, params: AlbumParams) -> Reply:
        return Reply(self.daemon.album(params.artist, params.album))

    @handles("cache.get")
    async def cache_get(self, params: CacheKeyParams) -> Reply:
        return Reply(self.daemon.cache_get(params.artist, params.album, params.source))

    @handles("cache.put")
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

    @handles("cache.invalidate")
    async def cache_invalidate(self, params: AlbumParams) -> Reply:
        removed = await self.daemon.cache_invalidate([(params.artist, params.album)])
        return Reply(
            {"removed": removed},
            log={"artist": params.artist[:200], "album": params.album[:200], "entries": removed},
        )

    @handles("cache.invalidate_many")
    async def cache_invalidate_many(self, params: AlbumsParams) -> Reply:
        albums = [(a.artist, a.album) for a in params.albums]
        removed = await self.daemon.cache_invalidate(albums)
        # One line for the batch: a program may invalidate a thousand albums at once.
        return Reply({"removed": removed}, log={"albums": len(albums), "entries": removed})

    @handles("cache.clear")
    async def cache_clear(self, params: NoParams) -> Reply:
        removed = await self.daemon.cache_clear()
        return Reply({"removed": removed}, log={"entries": removed})

    @handles("shutdown")
    async def shutdown(self, params: NoParams) -> Reply:
        # Answered first; the daemon starts stopping once the answer is written.
        return Reply(
            {"stopping": True, "pid": os.getpid()},
            after=partial(self.daemon.request_shutdown, "control"),
        )
