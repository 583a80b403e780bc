"""What each control method does with the daemon's state (the programs' methods are in
program_methods.py, `subscribe` in subscriptions.py).

A handler is a plain async function, named after its method (`cache.put`: `cache_put`), that
takes a `Context` and its validated params model and returns a Reply; daemon/control/spec.py's
table names it beside its method. Its docstring says what it answers: written as `{a, b}`, keys
every answer has (tests/client/test_client.py holds the answers to that). It raises
ProtocolError for an answer that is an error (flush failed, scan failed, a value the cache
refuses).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from daemon import __version__
from daemon.control.api import DaemonApi
from daemon.control.connection import Connection
from daemon.control.params import (
    AlbumParams,
    AlbumsParams,
    CacheKeyParams,
    CachePutParams,
    NoParams,
    RescanParams,
    TrackParams,
    TriggerParams,
    TriggerRunParams,
)
from daemon.control.protocol import FLUSH_FAILED, INVALID_PARAMS, SCAN_FAILED, ProtocolError
from daemon.errors import StateError
from daemon.journal.triggers import Trigger


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler is given besides its params."""

    daemon: DaemonApi
    # The connection the request came on (a subscription belongs to it).
    conn: Connection
    # The control server's own counters (connections, requests), for `status` and `stats`.
    control_stats: Callable[[], dict[str, Any]]


@dataclass
class Reply:
    result: Any
    # Runs after the answer is written (start forwarding events, stop the daemon).
    after: Callable[[], None] | None = None
    # What the request did, added to its one canonical log line (`request_handled`, logged at
    # info within the clients' allowance, see log_limit.py): a handler logs nothing itself.
    log: dict[str, Any] | None = None


def ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def ping(ctx: Context, params: NoParams) -> Reply:
    """Answers {pong, pid, version}."""
    return Reply({"pong": True, "pid": os.getpid(), "version": __version__})


async def status(ctx: Context, params: NoParams) -> Reply:
    """Answers the daemon's status object."""
    answer = ctx.daemon.status()
    answer["connections"] = ctx.control_stats()["connections_open"]
    return Reply(answer)


async def stats(ctx: Context, params: NoParams) -> Reply:
    """Answers {cache, events, subscribers, consumers, control, expectations}."""
    daemon = ctx.daemon
    return Reply(
        {
            "cache": await daemon.cache.stats(),
            "events": {
                "emitted": dict(sorted(daemon.hub.emitted.items())),
                "total": sum(daemon.hub.emitted.values()),
                "last_seq": daemon.last_seq,
            },
            "subscribers": daemon.hub.subscriber_count,
            "consumers": daemon.programs.consumers(),
            "control": ctx.control_stats(),
            "expectations": daemon.expectations(),
        }
    )


async def flush(ctx: Context, params: NoParams) -> Reply:
    """Answers what the checkpoint wrote."""
    try:
        result = await ctx.daemon.flush("requested")
    except StateError as err:
        raise ProtocolError(
            FLUSH_FAILED,
            f"flush failed: {err}; every acknowledged write is still committed, and the "
            "checkpoint is retried by itself",
        ) from None
    return Reply(result)


async def rescan(ctx: Context, params: RescanParams) -> Reply:
    """Answers the scan's event counts and duration_ms."""
    started = time.perf_counter()
    outcome = await ctx.daemon.rescan(accept_removals=params.accept_removals)
    if not outcome.ok:
        raise ProtocolError(SCAN_FAILED, f"rescan failed: {outcome.error}")
    result = outcome.as_dict()
    result["duration_ms"] = ms_since(started)
    return Reply(result)


async def tracks_get(ctx: Context, params: TrackParams) -> Reply:
    """Answers a track object or null."""
    return Reply(ctx.daemon.track(*params.lookup()))


async def tracks_album(ctx: Context, params: AlbumParams) -> Reply:
    """Answers the album's track objects."""
    return Reply(ctx.daemon.album(params.artist, params.album))


async def cache_get(ctx: Context, params: CacheKeyParams) -> Reply:
    """Answers a cache entry or null."""
    return Reply(ctx.daemon.cache.get(params.artist, params.album, params.source))


async def cache_put(ctx: Context, params: CachePutParams) -> Reply:
    """Answers the stored cache entry."""
    try:
        entry = await ctx.daemon.cache.put(dict(params))
    except (TypeError, ValueError) as err:
        raise ProtocolError(INVALID_PARAMS, f"cache.put: {err}") from None
    return Reply(entry)


async def cache_invalidate(ctx: Context, params: AlbumParams) -> Reply:
    """Answers {removed}."""
    removed = await ctx.daemon.cache.invalidate([(params.artist, params.album)])
    return Reply(
        {"removed": removed},
        log={"artist": params.artist[:200], "album": params.album[:200], "entries": removed},
    )


async def cache_invalidate_many(ctx: Context, params: AlbumsParams) -> Reply:
    """Answers {removed}."""
    albums = [(a.artist, a.album) for a in params.albums]
    removed = await ctx.daemon.cache.invalidate(albums)
    # One line for the batch: a program may invalidate a thousand albums at once.
    return Reply({"removed": removed}, log={"albums": len(albums), "entries": removed})


async def cache_clear(ctx: Context, params: NoParams) -> Reply:
    """Answers {removed}."""
    removed = await ctx.daemon.cache.clear()
    return Reply({"removed": removed}, log={"entries": removed})


async def shutdown(ctx: Context, params: NoParams) -> Reply:
    """Answers {stopping, pid}."""
    # Answered first; the daemon starts stopping once the answer is written.
    return Reply(
        {"stopping": True, "pid": os.getpid()},
        after=partial(ctx.daemon.request_shutdown, "control"),
    )


def _trigger(ctx: Context, name: str) -> Trigger:
    trigger = ctx.daemon.triggers.get(name)
    if trigger is None:
        known = ", ".join(ctx.daemon.triggers.items) or "none"
        raise ProtocolError(
            INVALID_PARAMS, f"no trigger named {name!r} in the config file (its triggers: {known})"
        )
    return trigger


async def triggers_list(ctx: Context, params: NoParams) -> Reply:
    """Answers {triggers, refused}: each trigger's name, state, pending events, last run and
    next start; why the config file's triggers were not taken (null: they were)."""
    return Reply(ctx.daemon.triggers.listed())


async def triggers_run(ctx: Context, params: TriggerRunParams) -> Reply:
    """Answers {name, requested, reason}: whether a run starts now, and why not."""
    reason = _trigger(ctx, params.name).ask(force=params.force)
    return Reply(
        {"name": params.name, "requested": reason is None, "reason": reason},
        log={"trigger": params.name, "force": params.force},
    )


async def triggers_pause(ctx: Context, params: TriggerParams) -> Reply:
    """Answers the trigger as triggers.list shows it."""
    trigger = _trigger(ctx, params.name)
    trigger.pause()
    return Reply(trigger.as_dict(), log={"trigger": params.name})


async def triggers_resume(ctx: Context, params: TriggerParams) -> Reply:
    """Answers the trigger as triggers.list shows it."""
    trigger = _trigger(ctx, params.name)
    trigger.resume()
    return Reply(trigger.as_dict(), log={"trigger": params.name})
