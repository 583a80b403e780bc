"""Every control method, spelled once: its name, its params model, its handler, whether it is
cheap, and the typed client method that calls it.

The rest is derived from `METHODS`: the server validates params with `validate_params` and runs
the handler named here (whose docstring says what it answers); the cheap methods' canonical
line is logged at debug (`CHEAP_METHODS`); tests hold both clients' typed methods to it. A
handler is named in its method's row, so a method without a handler cannot be written;
tests/control/test_protocol.py fails for a handler no row names.

To add a method: a params model in params.py, a handler in methods.py (or program_methods.py),
its row here, then the daemon's side and the clients' (daemon/ARCHITECTURE.md, "Where to add").
Its cost must be bounded: the sizes of its params in the model (params.py: MAX_BATCH keys or
entries, PageLimit items a page), its answer by MAX_ANSWER_BYTES (protocol.py, which lists every
bound).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from pydantic import ValidationError

from daemon.control import methods as m
from daemon.control import params as p
from daemon.control import program_methods as pm
from daemon.control.methods import Context, Reply
from daemon.control.params import Params
from daemon.control.protocol import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    ProtocolError,
    describe_params_error,
)
from daemon.control.subscriptions import subscribe

P = TypeVar("P", bound=Params)


@dataclass(frozen=True, slots=True)
class MethodSpec(Generic[P]):
    name: str
    params: type[P]
    handler: Callable[[Context, P], Awaitable[Reply]]
    # The typed method on MusicdClient and AsyncMusicdClient, when it is not named like the
    # handler (see `client_method`).
    client: str | None = None
    # Cheap: it only reads, or is cache.put (thousands a minute from a busy updater). Its
    # canonical log line is debug, so a busy client cannot flood the log (an info line costs
    # more than the put itself). Invalidations and clears stay at info.
    cheap: bool = False
    # Its answer is followed by notifications on the same connection until it closes; the
    # client method is an iterator of them.
    streams: bool = False

    @property
    def client_method(self) -> str:
        """The name of the typed method on both clients: `client`, or the method's own name
        with `_` for `.` (`cache.put`: `cache_put`), like its handler's."""
        return self.client or self.name.replace(".", "_")


def _table(rows: tuple[MethodSpec[Any], ...]) -> dict[str, MethodSpec[Any]]:
    table = {spec.name: spec for spec in rows}
    if len(table) != len(rows):
        raise ValueError("a method is named in more than one row of METHODS")
    return table


# In this order in "known methods" of an unknown-method error. A bare tuple, not written where
# MethodSpec[Any] is expected: so mypy infers each row's params model and checks that its
# handler takes that model.
_ROWS = (
    MethodSpec("ping", p.NoParams, m.ping, cheap=True),
    MethodSpec("status", p.NoParams, m.status, cheap=True),
    MethodSpec("stats", p.NoParams, m.stats, cheap=True),
    MethodSpec("flush", p.NoParams, m.flush),
    MethodSpec("rescan", p.RescanParams, m.rescan),
    MethodSpec("tracks.get", p.TrackParams, m.tracks_get, client="track", cheap=True),
    MethodSpec("tracks.album", p.AlbumParams, m.tracks_album, client="album_tracks", cheap=True),
    MethodSpec("cache.get", p.CacheKeyParams, m.cache_get, cheap=True),
    MethodSpec("cache.put", p.CachePutParams, m.cache_put, cheap=True),
    MethodSpec("cache.invalidate", p.AlbumParams, m.cache_invalidate, client="invalidate"),
    MethodSpec("cache.clear", p.NoParams, m.cache_clear),
    MethodSpec("subscribe", p.SubscribeParams, subscribe, streams=True),
    MethodSpec("changes.since", p.ChangesSinceParams, pm.changes_since, cheap=True),
    MethodSpec("cursor.get", p.CursorGetParams, pm.cursor_get, cheap=True),
    MethodSpec("cursor.commit", p.CursorCommitParams, pm.cursor_commit),
    MethodSpec("tracks.list", p.TracksListParams, pm.tracks_list, cheap=True),
    MethodSpec("cache.get_many", p.CacheGetManyParams, pm.cache_get_many, cheap=True),
    MethodSpec("cache.put_many", p.CachePutManyParams, pm.cache_put_many),
    MethodSpec("cache.cleanup", p.NoParams, pm.cache_cleanup),
    MethodSpec(
        "cache.invalidate_many", p.AlbumsParams, m.cache_invalidate_many, client="invalidate_many"
    ),
    MethodSpec("writes.expect", p.WritesExpectParams, pm.writes_expect, client="expect_writes"),
    MethodSpec("triggers.list", p.NoParams, m.triggers_list, cheap=True),
    MethodSpec("triggers.run", p.TriggerRunParams, m.triggers_run),
    MethodSpec("triggers.pause", p.TriggerParams, m.triggers_pause),
    MethodSpec("triggers.resume", p.TriggerParams, m.triggers_resume),
    MethodSpec("shutdown", p.NoParams, m.shutdown),
)
METHODS: Final = _table(_ROWS)

CHEAP_METHODS: Final = frozenset(name for name, spec in METHODS.items() if spec.cheap)


def validate_params(method: str, params: dict[str, Any]) -> Params:
    """The method's params model; ProtocolError for an unknown method or bad params."""
    spec = METHODS.get(method)
    if spec is None:
        raise ProtocolError(
            METHOD_NOT_FOUND,
            f"unknown method {method!r}; known methods: {', '.join(METHODS)}",
        )
    try:
        validated: Params = spec.params.model_validate(params)
    except ValidationError as err:
        raise ProtocolError(
            INVALID_PARAMS, describe_params_error(method, spec.params, err)
        ) from None
    return validated
