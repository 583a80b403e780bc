"""What each typed call of both clients sends and what its answer becomes, without any I/O.

`MusicdClient` (blocking.py) and `AsyncMusicdClient` (asynchronous.py) write every call as a
plain method of the same signature whose body is one line: the helper here of the same name
builds the `Call` (the control method and its params, and how its result is read), and the
client sends it. The control method's name is written here once for both clients;
tests/client/test_calls.py holds every method of daemon/control/spec.py's table to a method of
the same params on both clients.

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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Json = dict[str, Any]
Key = tuple[str, str, str]
T = TypeVar("T")


def _as_sent(result: Any) -> Any:
    return result


def _removed(result: Any) -> int:
    return int(result["removed"])


def _given(params: Json, **optional: Any) -> Json:
    # An optional param left out is sent as nothing, so the daemon's default applies.
    params.update((name, value) for name, value in optional.items() if value is not None)
    return params


def _listed(values: Iterable[Any] | None) -> list[Any] | None:
    return None if values is None else list(values)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to send, and what its result becomes."""

    method: str
    params: Json
    read: Callable[[Any], T] = _as_sent


# The page after `page`, read by `call`, or None when there is none (`iter_*`).
NextPage = Callable[[Json, Call[Json]], Call[Json] | None]


def ping() -> Call[Json]:
    return Call("ping", {})


def status() -> Call[Json]:
    return Call("status", {})


def stats() -> Call[Json]:
    return Call("stats", {})


def flush() -> Call[Json]:
    return Call("flush", {})


def rescan(accept_removals: bool) -> Call[Json]:
    return Call("rescan", {"accept_removals": accept_removals})


def track(
    persistent_id: str | None, track_id: int | None, music_id: int | None, database_id: int | None
) -> Call[Json | None]:
    ids = _given({}, track_id=track_id, music_id=music_id, database_id=database_id)
    return Call("tracks.get", _given(ids, persistent_id=persistent_id))


def album_tracks(artist: str, album: str) -> Call[list[Json]]:
    return Call("tracks.album", {"artist": artist, "album": album})


def cache_get(artist: str, album: str, source: str) -> Call[Json | None]:
    return Call("cache.get", {"artist": artist, "album": album, "source": source})


def cache_put(
    artist: str,
    album: str,
    source: str,
    success: bool,
    data: Any,
    metadata: Json | None,
    ttl_seconds: float | None,
) -> Call[Json]:
    params: Json = {"artist": artist, "album": album, "source": source}
    params.update(success=success, data=data)
    return Call("cache.put", _given(params, metadata=metadata, ttl_seconds=ttl_seconds))


def invalidate(artist: str, album: str) -> Call[int]:
    return Call("cache.invalidate", {"artist": artist, "album": album}, _removed)


def invalidate_many(albums: Iterable[tuple[str, str]]) -> Call[int]:
    wire = [{"artist": artist, "album": album} for artist, album in albums]
    return Call("cache.invalidate_many", {"albums": wire}, _removed)


def cache_clear() -> Call[int]:
    return Call("cache.clear", {}, _removed)


def shutdown() -> Call[Json]:
    return Call("shutdown", {})


def triggers_list() -> Call[Json]:
    return Call("triggers.list", {})


def triggers_run(name: str, force: bool) -> Call[Json]:
    return Call("triggers.run", {"name": name, "force": force})


def triggers_pause(name: str) -> Call[Json]:
    return Call("triggers.pause", {"name": name})


def triggers_resume(name: str) -> Call[Json]:
    return Call("triggers.resume", {"name": name})


def subscribe(
    types: Iterable[str] | None, since: str | None, exclude_origins: Iterable[str] | None
) -> Call[Json]:
    params = _given({}, types=_listed(types), since=since)
    return Call("subscribe", _given(params, exclude_origins=_listed(exclude_origins)))


def changes_since(
    cursor: str | None,
    consumer: str | None,
    limit: int | None,
    types: Iterable[str] | None,
    exclude_origins: Iterable[str] | None,
) -> Call[Json]:
    params: Json = {"consumer": consumer} if consumer is not None else {"cursor": cursor}
    params = _given(params, limit=limit, types=_listed(types))
    return Call("changes.since", _given(params, exclude_origins=_listed(exclude_origins)))


def next_changes(batch: Json, call: Call[Json]) -> Call[Json] | None:
    if batch["resync"] or not batch["more"]:
        return None
    rest = {k: v for k, v in call.params.items() if k not in ("cursor", "consumer")}
    return Call(call.method, {"cursor": batch["cursor"], **rest})


def cursor_get(consumer: str) -> Call[Json]:
    return Call("cursor.get", {"consumer": consumer})


def cursor_commit(consumer: str, cursor: str, force: bool) -> Call[Json]:
    return Call("cursor.commit", {"consumer": consumer, "cursor": cursor, "force": force})


def tracks_list(
    after: str | None,
    limit: int | None,
    fields: Iterable[str] | None,
    by: str | None,
    ids: Iterable[int] | None,
) -> Call[Json]:
    params = _given({"after": after}, limit=limit, fields=_listed(fields), by=by, ids=_listed(ids))
    return Call("tracks.list", params)


def next_tracks(page: Json, call: Call[Json]) -> Call[Json] | None:
    after = page["next"]
    return None if after is None else Call(call.method, {**call.params, "after": after})


def cache_get_many(keys: Iterable[Key | Json]) -> Call[list[Json | None]]:
    wire = [
        k if isinstance(k, dict) else {"artist": k[0], "album": k[1], "source": k[2]} for k in keys
    ]
    return Call("cache.get_many", {"keys": wire})


def cache_put_many(entries: Sequence[Json]) -> Call[Json]:
    return Call("cache.put_many", {"entries": list(entries)})


def cache_cleanup() -> Call[int]:
    return Call("cache.cleanup", {}, _removed)


def _expected(result: Any) -> int:
    return int(result["expected"])


def expect_writes(origin: str, tracks: Iterable[Json], ttl_seconds: float | None) -> Call[int]:
    params = _given({"origin": origin, "tracks": list(tracks)}, ttl_seconds=ttl_seconds)
    return Call("writes.expect", params, _expected)
