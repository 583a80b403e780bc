"""`AsyncMusicdClient`: the client for anyio code (asyncio or trio).

The same typed methods as `MusicdClient` (blocking.py), with the same parameters, awaited; each
is one line over a helper of calls.py. anyio is imported only once a client connects, so
importing `daemon.client` stays cheap for the blocking one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import daemon.client.calls as calls
from daemon.client.calls import Call, Json, Key, NextPage
from daemon.client.core import (
    NEED_DATA,
    BaseClient,
    ClientTimeout,
    ConnectionClosed,
    MessageTooLarge,
    connect_error,
)

if TYPE_CHECKING:
    import anyio
    from anyio.abc import SocketStream

_CHUNK: Final = 65536
T = TypeVar("T")


class AsyncMusicdClient(BaseClient):
    """The same client for anyio code (asyncio or trio): `async with AsyncMusicdClient() as c`."""

    _stream: SocketStream | None = None
    _lock: anyio.Lock | None = None

    async def connect(self) -> Self:
        import anyio

        if self._stream is None:
            try:
                self._stream = await anyio.connect_unix(self.socket_path)
            except OSError as err:
                raise connect_error(self.socket_path, err) from None
            self._lock = anyio.Lock()
        return self

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            self._conversation.reset()
            await stream.aclose()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _read_message(self) -> Any:
        import anyio

        await self.connect()
        assert self._stream is not None
        while True:
            try:
                message = self._conversation.next_message()
            except MessageTooLarge:
                await self.aclose()
                raise
            if message is not NEED_DATA:
                return message
            try:
                chunk = await self._stream.receive(_CHUNK)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                await self.aclose()
                raise ConnectionClosed("musicd closed the connection") from None
            self._conversation.receive(chunk)

    async def call(self, method: str, /, **params: Any) -> Any:
        """Send one request and return its result; RemoteError if the daemon refuses it."""
        import anyio

        await self.connect()
        assert self._stream is not None and self._lock is not None
        async with self._lock:
            req_id, line = self._conversation.request(method, params)
            try:
                with anyio.fail_after(self.timeout):
                    await self._stream.send(line)
                    while True:
                        message = await self._read_message()
                        done, result = self._conversation.answer(message, req_id, method)
                        if done:
                            return result
            except TimeoutError:
                await self.aclose()
                raise ClientTimeout(
                    f"musicd did not answer {method} within {self.timeout:g} s"
                ) from None
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.aclose()
                raise ConnectionClosed("lost the connection to musicd") from None

    async def _send(self, call: Call[T]) -> T:
        return call.read(await self.call(call.method, **call.params))

    async def _pages(self, call: Call[Json] | None, next_page: NextPage) -> AsyncIterator[Json]:
        while call is not None:
            page = await self._send(call)
            yield page
            call = next_page(page, call)

    async def _follow(self, call: Call[Json], event_timeout: float | None) -> AsyncIterator[Json]:
        import anyio

        self.subscription = await self._send(call)
        while True:
            while (event := self._conversation.next_event()) is not None:
                yield event
            try:
                with anyio.fail_after(event_timeout):
                    message = await self._read_message()
            except ConnectionClosed:
                return
            except TimeoutError:
                raise ClientTimeout(f"no event from musicd within {event_timeout:g} s") from None
            self._conversation.note(message)

    # -- the typed calls: MusicdClient's, awaited -------------------------------------------

    async def ping(self) -> Json:
        return await self._send(calls.ping())

    async def status(self) -> Json:
        return await self._send(calls.status())

    async def stats(self) -> Json:
        return await self._send(calls.stats())

    async def flush(self) -> Json:
        """Write the state to disk now; returns once it is there (RemoteError if it failed)."""
        return await self._send(calls.flush())

    async def rescan(self, *, accept_removals: bool = False) -> Json:
        """Read the whole library now; returns the counts of the events it produced."""
        return await self._send(calls.rescan(accept_removals))

    async def track(
        self,
        persistent_id: str | None = None,
        *,
        track_id: int | None = None,
        music_id: int | None = None,
        database_id: int | None = None,
    ) -> Json | None:
        """A track by its persistent id or by one number Music.app addresses it by, or None."""
        return await self._send(calls.track(persistent_id, track_id, music_id, database_id))

    async def album_tracks(self, artist: str, album: str) -> list[Json]:
        return await self._send(calls.album_tracks(artist, album))

    async def cache_get(self, artist: str, album: str, source: str) -> Json | None:
        """The cached answer for an album from `source`, or None."""
        return await self._send(calls.cache_get(artist, album, source))

    async def cache_put(
        self,
        artist: str,
        album: str,
        source: str,
        *,
        success: bool = True,
        data: Any = None,
        metadata: Json | None = None,
        ttl_seconds: float | None = None,
    ) -> Json:
        """Store an answer; see MusicdClient.cache_put."""
        return await self._send(
            calls.cache_put(artist, album, source, success, data, metadata, ttl_seconds)
        )

    async def invalidate(self, artist: str, album: str) -> int:
        """Drop every source's answer for an album; returns how many were dropped."""
        return await self._send(calls.invalidate(artist, album))

    async def invalidate_many(self, albums: Iterable[tuple[str, str]]) -> int:
        """Drop every source's answers of these (artist, album) pairs at once; returns how many."""
        return await self._send(calls.invalidate_many(albums))

    async def cache_clear(self) -> int:
        return await self._send(calls.cache_clear())

    async def shutdown(self) -> Json:
        """Ask the daemon to stop (like SIGTERM); it answers before it starts stopping."""
        return await self._send(calls.shutdown())

    def subscribe(
        self,
        types: Iterable[str] | None = None,
        *,
        event_timeout: float | None = None,
        since: str | None = None,
        exclude_origins: Iterable[str] | None = None,
    ) -> AsyncIterator[Json]:
        """Every event (or those of `types`) as it happens; see MusicdClient.subscribe."""
        return self._follow(calls.subscribe(types, since, exclude_origins), event_timeout)

    async def changes_since(
        self,
        cursor: str | None = None,
        *,
        consumer: str | None = None,
        limit: int | None = None,
        types: Iterable[str] | None = None,
        exclude_origins: Iterable[str] | None = None,
    ) -> Json:
        """The events after `cursor` (or after consumer's committed cursor), at most `limit`,
        less the track events of `exclude_origins` (programs' announced writes)."""
        return await self._send(
            calls.changes_since(cursor, consumer, limit, types, exclude_origins)
        )

    def iter_changes(
        self,
        cursor: str | None = None,
        *,
        consumer: str | None = None,
        limit: int | None = None,
        types: Iterable[str] | None = None,
        exclude_origins: Iterable[str] | None = None,
    ) -> AsyncIterator[Json]:
        """`changes.since` batches until caught up; see MusicdClient.iter_changes."""
        first = calls.changes_since(cursor, consumer, limit, types, exclude_origins)
        return self._pages(first, calls.next_changes)

    async def cursor_get(self, consumer: str) -> Json:
        return await self._send(calls.cursor_get(consumer))

    async def cursor_commit(self, consumer: str, cursor: str, *, force: bool = False) -> Json:
        """Store where `consumer` has got to; never backwards unless `force`."""
        return await self._send(calls.cursor_commit(consumer, cursor, force))

    async def triggers_list(self) -> Json:
        return await self._send(calls.triggers_list())

    async def triggers_run(self, name: str, *, force: bool = False) -> Json:
        """Run trigger `name` now if events are pending for it (or anyway, with `force`)."""
        return await self._send(calls.triggers_run(name, force))

    async def triggers_pause(self, name: str) -> Json:
        return await self._send(calls.triggers_pause(name))

    async def triggers_resume(self, name: str) -> Json:
        return await self._send(calls.triggers_resume(name))

    async def tracks_list(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        fields: Iterable[str] | None = None,
        by: str | None = None,
        ids: Iterable[int] | None = None,
    ) -> Json:
        """A page of tracks; with `by` (track_id, music_id or database_id), those with these ids."""
        return await self._send(calls.tracks_list(after, limit, fields, by, ids))

    def iter_track_pages(
        self, *, limit: int | None = None, fields: Iterable[str] | None = None
    ) -> AsyncIterator[Json]:
        """Every page of `tracks.list`; the first page's `cursor` is where to follow changes."""
        first = calls.tracks_list(None, limit, fields, None, None)
        return self._pages(first, calls.next_tracks)

    async def cache_get_many(self, keys: Iterable[Key | Json]) -> list[Json | None]:
        """Answers for (artist, album, source) keys, in order; None for a miss."""
        return await self._send(calls.cache_get_many(keys))

    async def cache_put_many(self, entries: Sequence[Json]) -> Json:
        """Store entries (cache.put's params each) in one transaction: all, or none."""
        return await self._send(calls.cache_put_many(entries))

    async def cache_cleanup(self) -> int:
        """Drop expired entries now; returns how many."""
        return await self._send(calls.cache_cleanup())

    async def expect_writes(
        self, origin: str, tracks: Iterable[Json], *, ttl_seconds: float | None = None
    ) -> int:
        """Say that `origin` is about to write these tracks ({persistent_id or track_id,
        fields: {field: new value}}); the modifications a scan then finds with exactly those
        values carry `origin`. Returns how many were recorded."""
        return await self._send(calls.expect_writes(origin, tracks, ttl_seconds))
