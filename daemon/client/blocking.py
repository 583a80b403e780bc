"""`MusicdClient`: the blocking client, on a plain socket with no event loop.

It imports neither anyio nor pydantic, so a script (and the `musicd` command) starts fast. Every
typed method is one line over a helper of calls.py; `AsyncMusicdClient` (asynchronous.py) has
the same methods with the same parameters.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

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

_CHUNK: Final = 65536
T = TypeVar("T")


class MusicdClient(BaseClient):
    """A blocking client on a plain socket: cheap to create, no event loop.

    Args:
        socket_path: the daemon's socket (default: the platform default; see `musicd status`).
        timeout: seconds to wait for an answer (None: forever).
    """

    _sock: socket.socket | None = None

    # -- connection -----------------------------------------------------------------------

    def connect(self) -> Self:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.socket_path))
            except OSError as err:
                sock.close()
                raise connect_error(self.socket_path, err) from None
            self._sock = sock
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._conversation.reset()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read_message(self, timeout: float | None) -> Any:
        sock = self.connect()._sock
        assert sock is not None
        sock.settimeout(timeout)
        while True:
            try:
                message = self._conversation.next_message()
            except MessageTooLarge:
                self.close()
                raise
            if message is not NEED_DATA:
                return message
            try:
                chunk = sock.recv(_CHUNK)
            except TimeoutError:
                raise ClientTimeout(f"nothing came from musicd within {timeout:g} s") from None
            except OSError as err:
                self.close()
                raise ConnectionClosed(f"lost the connection to musicd: {err.strerror}") from None
            if not chunk:
                self.close()
                raise ConnectionClosed("musicd closed the connection")
            self._conversation.receive(chunk)

    # -- requests ---------------------------------------------------------------------------

    def call(self, method: str, /, **params: Any) -> Any:
        """Send one request and return its result; RemoteError if the daemon refuses it."""
        sock = self.connect()._sock
        assert sock is not None
        req_id, line = self._conversation.request(method, params)
        try:
            sock.settimeout(self.timeout)
            sock.sendall(line)
        except TimeoutError:
            self.close()
            raise ClientTimeout(
                f"musicd did not take the {method} request within {self.timeout:g} s"
            ) from None
        except OSError as err:
            self.close()
            raise ConnectionClosed(f"lost the connection to musicd: {err.strerror}") from None
        try:
            while True:
                done, result = self._conversation.answer(
                    self._read_message(self.timeout), req_id, method
                )
                if done:
                    return result
        except ClientTimeout:
            self.close()  # a late answer must not be taken for the next request's
            raise ClientTimeout(
                f"musicd did not answer {method} within {self.timeout:g} s"
            ) from None

    def _send(self, call: Call[T]) -> T:
        return call.read(self.call(call.method, **call.params))

    def _pages(self, call: Call[Json] | None, next_page: NextPage) -> Iterator[Json]:
        while call is not None:
            page = self._send(call)
            yield page
            call = next_page(page, call)

    def _follow(self, call: Call[Json], event_timeout: float | None) -> Iterator[Json]:
        self.subscription = self._send(call)
        while True:
            while (event := self._conversation.next_event()) is not None:
                yield event
            try:
                self._conversation.note(self._read_message(event_timeout))
            except ConnectionClosed:
                return

    def wait_closed(self, timeout: float) -> None:
        """Wait until the daemon closes this connection (after `shutdown`); bounded."""
        try:
            while True:
                self._read_message(timeout)
        except ConnectionClosed:
            return

    # -- the typed calls --------------------------------------------------------------------

    def ping(self) -> Json:
        return self._send(calls.ping())

    def status(self) -> Json:
        return self._send(calls.status())

    def stats(self) -> Json:
        return self._send(calls.stats())

    def flush(self) -> Json:
        """Write the state to disk now; returns once it is there (RemoteError if it failed)."""
        return self._send(calls.flush())

    def rescan(self, *, accept_removals: bool = False) -> Json:
        """Read the whole library now; returns the counts of the events it produced."""
        return self._send(calls.rescan(accept_removals))

    def track(
        self,
        persistent_id: str | None = None,
        *,
        track_id: int | None = None,
        music_id: int | None = None,
        database_id: int | None = None,
    ) -> Json | None:
        """A track by its persistent id or by one number Music.app addresses it by, or None."""
        return self._send(calls.track(persistent_id, track_id, music_id, database_id))

    def album_tracks(self, artist: str, album: str) -> list[Json]:
        return self._send(calls.album_tracks(artist, album))

    def cache_get(self, artist: str, album: str, source: str) -> Json | None:
        """The cached answer for an album from `source`, or None."""
        return self._send(calls.cache_get(artist, album, source))

    def cache_put(
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
        """Store an answer (a failed lookup with success=False lives for the retry TTL;
        `ttl_seconds` gives any answer a lifetime of its own)."""
        return self._send(
            calls.cache_put(artist, album, source, success, data, metadata, ttl_seconds)
        )

    def invalidate(self, artist: str, album: str) -> int:
        """Drop every source's answer for an album; returns how many were dropped."""
        return self._send(calls.invalidate(artist, album))

    def invalidate_many(self, albums: Iterable[tuple[str, str]]) -> int:
        """Drop every source's answers of these (artist, album) pairs at once; returns how many."""
        return self._send(calls.invalidate_many(albums))

    def cache_clear(self) -> int:
        return self._send(calls.cache_clear())

    def shutdown(self) -> Json:
        """Ask the daemon to stop (like SIGTERM); it answers before it starts stopping."""
        return self._send(calls.shutdown())

    def subscribe(
        self,
        types: Iterable[str] | None = None,
        *,
        event_timeout: float | None = None,
        since: str | None = None,
        exclude_origins: Iterable[str] | None = None,
    ) -> Iterator[Json]:
        """Every event (or those of `types`) as it happens, in order, forever.

        With `since` (a cursor), the events after it come first, then live ones, with no gap;
        `self.subscription` holds the daemon's answer (`resync: true` when that position could
        not be followed). Ends when the daemon closes the connection (it stopped); raises
        SubscriptionDropped if the daemon cut this subscriber off for falling behind, and
        ClientTimeout if `event_timeout` seconds pass without an event (None: wait forever).
        """
        return self._follow(calls.subscribe(types, since, exclude_origins), event_timeout)

    def changes_since(
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
        return self._send(calls.changes_since(cursor, consumer, limit, types, exclude_origins))

    def iter_changes(
        self,
        cursor: str | None = None,
        *,
        consumer: str | None = None,
        limit: int | None = None,
        types: Iterable[str] | None = None,
        exclude_origins: Iterable[str] | None = None,
    ) -> Iterator[Json]:
        """`changes.since` batches until caught up (the last one has `more: false`).

        Commits nothing: commit `batch["cursor"]` once a batch is applied.
        """
        first = calls.changes_since(cursor, consumer, limit, types, exclude_origins)
        return self._pages(first, calls.next_changes)

    def cursor_get(self, consumer: str) -> Json:
        return self._send(calls.cursor_get(consumer))

    def cursor_commit(self, consumer: str, cursor: str, *, force: bool = False) -> Json:
        """Store where `consumer` has got to; never backwards unless `force`."""
        return self._send(calls.cursor_commit(consumer, cursor, force))

    def triggers_list(self) -> Json:
        return self._send(calls.triggers_list())

    def triggers_run(self, name: str, *, force: bool = False) -> Json:
        """Run trigger `name` now if events are pending for it (or anyway, with `force`)."""
        return self._send(calls.triggers_run(name, force))

    def triggers_pause(self, name: str) -> Json:
        return self._send(calls.triggers_pause(name))

    def triggers_resume(self, name: str) -> Json:
        return self._send(calls.triggers_resume(name))

    def tracks_list(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        fields: Iterable[str] | None = None,
        by: str | None = None,
        ids: Iterable[int] | None = None,
    ) -> Json:
        """A page of tracks; with `by` (track_id, music_id or database_id), those with these ids."""
        return self._send(calls.tracks_list(after, limit, fields, by, ids))

    def iter_track_pages(
        self, *, limit: int | None = None, fields: Iterable[str] | None = None
    ) -> Iterator[Json]:
        """Every page of `tracks.list`; the first page's `cursor` is where to follow changes."""
        first = calls.tracks_list(None, limit, fields, None, None)
        return self._pages(first, calls.next_tracks)

    def cache_get_many(self, keys: Iterable[Key | Json]) -> list[Json | None]:
        """Answers for (artist, album, source) keys, in order; None for a miss."""
        return self._send(calls.cache_get_many(keys))

    def cache_put_many(self, entries: Sequence[Json]) -> Json:
        """Store entries (cache.put's params each) in one transaction: all, or none."""
        return self._send(calls.cache_put_many(entries))

    def cache_cleanup(self) -> int:
        """Drop expired entries now; returns how many."""
        return self._send(calls.cache_cleanup())

    def expect_writes(
        self, origin: str, tracks: Iterable[Json], *, ttl_seconds: float | None = None
    ) -> int:
        """Say that `origin` is about to write these tracks ({persistent_id or track_id,
        fields: {field: new value}}); the modifications a scan then finds with exactly those
        values carry `origin`. Returns how many were recorded."""
        return self._send(calls.expect_writes(origin, tracks, ttl_seconds))
