"""Every control method, spelled once: its name, its params model, the shape of its result,
whether it is cheap, and the typed client method that calls it.

The rest is derived from `METHODS`: the server validates params with `validate_params`, refuses
to start when its handlers and this table disagree (`check_handlers`), logs the cheap methods'
canonical line at debug (`CHEAP_METHODS`); tests hold both clients' typed methods to it.

To add a method: a params model in params.py, a line here, a handler in methods.py (or
program_methods.py), a builder in daemon/client/calls.py bound on both clients. Its cost must be
bounded: the sizes of its params in the model (params.py: MAX_BATCH keys or entries, PageLimit
items a page), its answer by MAX_ANSWER_BYTES (protocol.py, which lists every bound).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from daemon.control import params as p
from daemon.control.params import Params
from daemon.control.protocol import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    ProtocolError,
    describe_params_error,
)


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    params: type[Params]
    # What the result is, in a few words (the handler builds it). Written as `{a, b}`, it names
    # keys every answer has (tests/client/test_client.py holds the answers to that).
    result: str
    # The name of the typed method on MusicdClient and AsyncMusicdClient.
    client: str
    # Cheap: it only reads, or is cache.put (thousands a minute from a busy updater). Its
    # canonical log line is debug, so a busy client cannot flood the log (an info line costs
    # more than the put itself). Invalidations and clears stay at info.
    cheap: bool = False


def _table(*specs: MethodSpec) -> dict[str, MethodSpec]:
    return {spec.name: spec for spec in specs}


# In this order in "known methods" of an unknown-method error.
METHODS: Final = _table(
    MethodSpec("ping", p.NoParams, "{pong, pid, version}", "ping", cheap=True),
    MethodSpec("status", p.NoParams, "the daemon's status object", "status", cheap=True),
    MethodSpec(
        "stats", p.NoParams, "{cache, events, subscribers, consumers, control}", "stats", cheap=True
    ),
    MethodSpec("flush", p.NoParams, "what the checkpoint wrote", "flush"),
    MethodSpec("rescan", p.RescanParams, "the scan's event counts and duration_ms", "rescan"),
    MethodSpec("tracks.get", p.TrackParams, "a track object or null", "track", cheap=True),
    MethodSpec("tracks.album", p.AlbumParams, "[track objects]", "album_tracks", cheap=True),
    MethodSpec("cache.get", p.CacheKeyParams, "a cache entry or null", "cache_get", cheap=True),
    MethodSpec("cache.put", p.CachePutParams, "the stored cache entry", "cache_put", cheap=True),
    MethodSpec("cache.invalidate", p.AlbumParams, "{removed}", "invalidate"),
    MethodSpec("cache.clear", p.NoParams, "{removed}", "cache_clear"),
    MethodSpec(
        "subscribe",
        p.SubscribeParams,
        "{subscribed, types, last_seq, resync, reason}, then event notifications",
        "subscribe",
    ),
    MethodSpec(
        "changes.since",
        p.ChangesSinceParams,
        "{events, cursor, more, resync, reason}, and last_seq unless resync",
        "changes_since",
        cheap=True,
    ),
    MethodSpec(
        "cursor.get",
        p.CursorGetParams,
        "{consumer, cursor, updated_at, behind}",
        "cursor_get",
        cheap=True,
    ),
    MethodSpec(
        "cursor.commit",
        p.CursorCommitParams,
        "{consumer, committed, cursor, previous, reason}",
        "cursor_commit",
    ),
    MethodSpec(
        "tracks.list",
        p.TracksListParams,
        "{tracks, next, cursor, building}",
        "tracks_list",
        cheap=True,
    ),
    MethodSpec(
        "cache.get_many",
        p.CacheGetManyParams,
        "[cache entry or null], in the keys' order",
        "cache_get_many",
        cheap=True,
    ),
    MethodSpec("cache.put_many", p.CachePutManyParams, "{stored}", "cache_put_many"),
    MethodSpec("cache.cleanup", p.NoParams, "{removed}", "cache_cleanup"),
    MethodSpec("cache.invalidate_many", p.AlbumsParams, "{removed}", "invalidate_many"),
    MethodSpec("shutdown", p.NoParams, "{stopping, pid}", "shutdown"),
)

CHEAP_METHODS: Final = frozenset(name for name, spec in METHODS.items() if spec.cheap)


class HandlerMismatch(Exception):
    """The server's handlers and METHODS disagree: a bug, found when the server is built."""


def check_handlers(names: Iterable[str]) -> None:
    """Raise HandlerMismatch unless `names` (the server's handlers) are exactly METHODS."""
    given = set(names)
    unhandled = [name for name in METHODS if name not in given]
    unknown = sorted(given - set(METHODS))
    problems = []
    if unhandled:
        problems.append(f"no handler for {', '.join(unhandled)}")
    if unknown:
        problems.append(f"handlers without a spec: {', '.join(unknown)}")
    if problems:
        raise HandlerMismatch("; ".join(problems))


def validate_params(method: str, params: dict[str, Any]) -> Params:
    """The method's params model; ProtocolError for an unknown method or bad params."""
    spec = METHODS.get(method)
    if spec is None:
        raise ProtocolError(
            METHOD_NOT_FOUND,
            f"unknown method {method!r}; known methods: {', '.join(METHODS)}",
        )
    try:
        return spec.params.model_validate(params)
    except ValidationError as err:
        raise ProtocolError(
            INVALID_PARAMS, describe_params_error(method, spec.params, err)
        ) from None
