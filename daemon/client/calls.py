"""The typed client calls, written once for both clients.

Each call is a builder: a plain function with the public signature that returns the request to
send (method and params) and how to turn its result into the return value. `blocking` and
`awaiting` bind a builder as a method of `MusicdClient` and `AsyncMusicdClient`; `*_pages` do the
same for the calls that follow pages until there are no more. The control table
(daemon/control/spec.py) names the method each control method is offered as; a test holds these
builders to it.

For programs that use musicd: changes since a position, named cursors, the library page by
page, and batch cache calls.

    with MusicdClient() as musicd:
        batch = musicd.changes_since(consumer="year-updater")
        if batch["resync"]:
            for page in musicd.iter_track_pages():
                ...  # apply page["tracks"]; page["cursor"] of the first page is where to follow
        for batch in musicd.iter_changes(consumer="year-updater"):
            ...  # apply batch["events"], then:
            musicd.cursor_commit("year-updater", batch["cursor"])

A batch of `iter_changes` may say `resync: true` (only the first can): the position could not be
followed; read the library with `iter_track_pages` and follow from the cursor it gives.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

Json = dict[str, Any]
Key = tuple[str, str, str]
P = ParamSpec("P")
T = TypeVar("T")
B = TypeVar("B")
R = TypeVar("R")
S = TypeVar("S")


def _as_sent(result: Any) -> Any:
    return result


def _removed(result: Any) -> int:
    return int(result["removed"])


def _given(params: Json, **optional: Any) -> Json:
    # An optional param left out is sent as nothing, so the daemon's default applies.
    params.update((name, value) for name, value in optional.items() if value is not None)
    return params


def _listed(values: Iterable[str] | None) -> list[str] | None:
    return None if values is None else list(values)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to send, and what its result becomes."""

    method: str
    params: Json
    convert: Callable[[Any], T] = _as_sent


@dataclass(frozen=True, slots=True)
class Pages:
    """Calls that go on page after page: `follow` gives the next call, or None at the end."""

    first: Call[Json]
    # The next call from the page just read and the call that read it.
    follow: Callable[[Json, Call[Json]], Call[Json] | None]


# -- the calls ------------------------------------------------------------------------------


def ping() -> Call[Json]:
    return Call("ping", {})


def status() -> Call[Json]:
    return Call("status", {})


def stats() -> Call[Json]:
    return Call("stats", {})


def flush() -> Call[Json]:
    """Write the state to disk now; returns once it is there (RemoteError if it failed)."""
    return Call("flush", {})


def rescan(*, accept_removals: bool = False) -> Call[Json]:
    """Read the whole library now; returns the counts of the events it produced."""
    return Call("rescan", {"accept_removals": accept_removals})


def track(
    persistent_id: str | None = None,
    *,
    track_id: int | None = None,
    music_id: int | None = None,
    database_id: int | None = None,
) -> Call[Json | None]:
    """A track by its persistent id or by one number Music.app addresses it by, or None."""
    ids = _given({}, track_id=track_id, music_id=music_id, database_id=database_id)
    return Call("tracks.get", _given(ids, persistent_id=persistent_id))


def album_tracks(artist: str, album: str) -> Call[list[Json]]:
    return Call("tracks.album", {"artist": artist, "album": album})


def cache_get(artist: str, album: str, source: str) -> Call[Json | None]:
    """The cached answer for an album from `source`, or None."""
    return Call("cache.get", {"artist": artist, "album": album, "source": source})


def cache_put(
    artist: str,
    album: str,
    source: str,
    *,
    success: bool = True,
    data: Any = None,
    metadata: Json | None = None,
    ttl_seconds: float | None = None,
) -> Call[Json]:
    """Store an answer (a failed lookup with success=False lives for the retry TTL;
    `ttl_seconds` gives any answer a lifetime of its own)."""
    params: Json = {"artist": artist, "album": album, "source": source}
    params.update(success=success, data=data)
    return Call("cache.put", _given(params, metadata=metadata, ttl_seconds=ttl_seconds))


def invalidate(artist: str, album: str) -> Call[int]:
    """Drop every source's answer for an album; returns how many were dropped."""
    return Call("cache.invalidate", {"artist": artist, "album": album}, _removed)


def invalidate_many(albums: Iterable[tuple[str, str]]) -> Call[int]:
    """Drop every source's answers of these (artist, album) pairs at once; returns how many."""
    wire = [{"artist": artist, "album": album} for artist, album in albums]
    return Call("cache.invalidate_many", {"albums": wire}, _removed)


def cache_clear() -> Call[int]:
    return Call("cache.clear", {}, _removed)


def shutdown() -> Call[Json]:
    """Ask the daemon to stop (like SIGTERM); it answers before it starts stopping."""
    return Call("shutdown", {})


@dataclass(frozen=True, slots=True)
class Subscription:
    """The `subscribe` request, and how long to wait for each event (None: forever)."""

    call: Call[Json]
    event_timeout: float | None


def subscribe(
    types: Iterable[str] | None = None,
    *,
    event_timeout: float | None = None,
    since: str | None = None,
) -> Subscription:
    """Every event (or those of `types`) as it happens, in order, forever.

    With `since` (a cursor), the events after it come first, then live ones, with no gap;
    `self.subscription` holds the daemon's answer (`resync: true` when that position could
    not be followed). Ends when the daemon closes the connection (it stopped); raises
    SubscriptionDropped if the daemon cut this subscriber off for falling behind, and
    ClientTimeout if `event_timeout` seconds pass without an event (None: wait forever).
    """
    call: Call[Json] = Call("subscribe", _given({}, types=_listed(types), since=since))
    return Subscription(call, event_timeout)


def changes_since(
    cursor: str | None = None,
    *,
    consumer: str | None = None,
    limit: int | None = None,
    types: Iterable[str] | None = None,
) -> Call[Json]:
    """The events after `cursor` (or after consumer's committed cursor), at most `limit`."""
    params: Json = {"consumer": consumer} if consumer is not None else {"cursor": cursor}
    return Call("changes.since", _given(params, limit=limit, types=_listed(types)))


def _next_changes(batch: Json, call: Call[Json]) -> Call[Json] | None:
    if batch["resync"] or not batch["more"]:
        return None
    rest = {k: v for k, v in call.params.items() if k not in ("cursor", "consumer")}
    return Call(call.method, {"cursor": batch["cursor"], **rest})


def _paged(
    first: Callable[P, Call[Json]],
    follow: Callable[[Json, Call[Json]], Call[Json] | None],
    name: str,
    doc: str,
) -> Callable[P, Pages]:
    """A pages builder with the signature of its first call's."""

    def build(*args: P.args, **kwargs: P.kwargs) -> Pages:
        return Pages(first(*args, **kwargs), follow)

    functools.update_wrapper(build, first)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


iter_changes = _paged(
    changes_since,
    _next_changes,
    "iter_changes",
    """`changes.since` batches until caught up (the last one has `more: false`).

    Commits nothing: commit `batch["cursor"]` once a batch is applied.
    """,
)


def cursor_get(consumer: str) -> Call[Json]:
    return Call("cursor.get", {"consumer": consumer})


def cursor_commit(consumer: str, cursor: str, *, force: bool = False) -> Call[Json]:
    """Store where `consumer` has got to; never backwards unless `force`."""
    return Call("cursor.commit", {"consumer": consumer, "cursor": cursor, "force": force})


def tracks_list(
    after: str | None = None,
    *,
    limit: int | None = None,
    fields: Iterable[str] | None = None,
    by: str | None = None,
    ids: Iterable[int] | None = None,
) -> Call[Json]:
    """A page of tracks; with `by` (track_id, music_id or database_id), those with these ids."""
    wanted = None if ids is None else list(ids)
    params = _given({"after": after}, limit=limit, fields=_listed(fields), by=by, ids=wanted)
    return Call("tracks.list", params)


def _next_tracks(page: Json, call: Call[Json]) -> Call[Json] | None:
    after = page["next"]
    return None if after is None else Call(call.method, {**call.params, "after": after})


def iter_track_pages(*, limit: int | None = None, fields: Iterable[str] | None = None) -> Pages:
    """Every page of `tracks.list`; the first page's `cursor` is where to follow changes."""
    return Pages(tracks_list(None, limit=limit, fields=fields), _next_tracks)


def cache_get_many(keys: Iterable[Key | Json]) -> Call[list[Json | None]]:
    """Answers for (artist, album, source) keys, in order; None for a miss."""
    wire = [
        k if isinstance(k, dict) else {"artist": k[0], "album": k[1], "source": k[2]} for k in keys
    ]
    return Call("cache.get_many", {"keys": wire})


def cache_put_many(entries: Sequence[Json]) -> Call[Json]:
    """Store entries (cache.put's params each) in one transaction: all, or none."""
    return Call("cache.put_many", {"entries": list(entries)})


def cache_cleanup() -> Call[int]:
    """Drop expired entries now; returns how many."""
    return Call("cache.cleanup", {}, _removed)


# -- binding them to a transport ------------------------------------------------------------


class Caller(Protocol):
    def call(self, method: str, /, **params: Any) -> Any: ...


class AsyncCaller(Protocol):
    async def call(self, method: str, /, **params: Any) -> Any: ...


class Subscriber(Caller, Protocol):
    def _follow(self, subscription: Subscription) -> Iterator[Json]: ...


class AsyncSubscriber(AsyncCaller, Protocol):
    def _follow(self, subscription: Subscription) -> AsyncIterator[Json]: ...


def _named(method: Callable[..., Any], build: Callable[..., Any], returns: str | None) -> None:
    # help() and inspect show the builder's name, text and params, with `self` in front, and
    # what the method returns (`returns`, or T of the builder's Call[T]).
    method.__name__ = method.__qualname__ = build.__name__
    method.__doc__ = build.__doc__
    signature = inspect.signature(build)
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if returns is None:
        returns = str(signature.return_annotation).removeprefix("Call[").removesuffix("]")
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self, *signature.parameters.values()], return_annotation=returns
    )


def _bind(
    build: Callable[P, B], run: Callable[[S, B], R], returns: str | None
) -> Callable[Concatenate[S, P], R]:
    def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return run(self, build(*args, **kwargs))

    _named(method, build, returns)
    return method


def _result(client: Caller, call: Call[T]) -> T:
    return call.convert(client.call(call.method, **call.params))


def _pages(client: Caller, pages: Pages) -> Iterator[Json]:
    call: Call[Json] | None = pages.first
    while call is not None:
        page = _result(client, call)
        yield page
        call = pages.follow(page, call)


async def _awaited(client: AsyncCaller, call: Call[T]) -> T:
    return call.convert(await client.call(call.method, **call.params))


async def _async_pages(client: AsyncCaller, pages: Pages) -> AsyncIterator[Json]:
    call: Call[Json] | None = pages.first
    while call is not None:
        page = await _awaited(client, call)
        yield page
        call = pages.follow(page, call)


def _events(client: Subscriber, subscription: Subscription) -> Iterator[Json]:
    return client._follow(subscription)


def _async_events(client: AsyncSubscriber, subscription: Subscription) -> AsyncIterator[Json]:
    return client._follow(subscription)


def blocking(build: Callable[P, Call[T]]) -> Callable[Concatenate[Caller, P], T]:
    return _bind(build, _result, None)


def awaiting(
    build: Callable[P, Call[T]],
) -> Callable[Concatenate[AsyncCaller, P], Coroutine[Any, Any, T]]:
    # A coroutine function of its own, so that code asking inspect whether it is one hears yes.
    async def method(self: AsyncCaller, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await _awaited(self, build(*args, **kwargs))

    _named(method, build, None)
    return method


def blocking_pages(build: Callable[P, Pages]) -> Callable[Concatenate[Caller, P], Iterator[Json]]:
    return _bind(build, _pages, "Iterator[Json]")


def awaiting_pages(
    build: Callable[P, Pages],
) -> Callable[Concatenate[AsyncCaller, P], AsyncIterator[Json]]:
    return _bind(build, _async_pages, "AsyncIterator[Json]")


def blocking_events(
    build: Callable[P, Subscription],
) -> Callable[Concatenate[Subscriber, P], Iterator[Json]]:
    return _bind(build, _events, "Iterator[Json]")


def awaiting_events(
    build: Callable[P, Subscription],
) -> Callable[Concatenate[AsyncSubscriber, P], AsyncIterator[Json]]:
    return _bind(build, _async_events, "AsyncIterator[Json]")
