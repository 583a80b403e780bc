"""Clients of the control socket: `MusicdClient` (blocking) and `AsyncMusicdClient` (anyio).

Both speak JSON-RPC 2.0, one JSON object per line (see daemon/control/protocol.py), send one
request at a time per client and raise `RemoteError` when the daemon answers with an error,
`NotRunning` when nothing listens on the socket. The synchronous one imports neither anyio nor
pydantic, so a script (and the `musicd` command) starts fast. A client is not thread-safe: give
each thread its own.

Both are thin transports: what to send and what an arrived message means is
daemon/client/core.py's (no I/O there), and each typed method is a builder of
daemon/client/calls.py, written once and bound to both clients.

    with MusicdClient() as musicd:
        musicd.cache_put("Miles Davis", "Kind of Blue", "musicbrainz", data={"year": 1959})
        for event in musicd.subscribe(["track_modified"]):
            print(event["changed"], event["old"], event["new"])
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from daemon.client import calls
from daemon.client.calls import (
    awaiting,
    awaiting_events,
    awaiting_pages,
    blocking,
    blocking_events,
    blocking_pages,
)
from daemon.client.core import (
    DEFAULT_TIMEOUT,
    MAX_MESSAGE_BYTES,
    NEED_DATA,
    ClientError,
    ClientTimeout,
    ConnectionClosed,
    Conversation,
    MessageTooLarge,
    SubscriptionDropped,
    connect_error,
)
from daemon.errors import NotRunning, RemoteError

if TYPE_CHECKING:
    import anyio
    from anyio.abc import SocketStream

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_MESSAGE_BYTES",
    "AsyncMusicdClient",
    "ClientError",
    "ClientTimeout",
    "ConnectionClosed",
    "MusicdClient",
    "NotRunning",
    "RemoteError",
    "SubscriptionDropped",
    "resolve_socket",
]

_CHUNK: Final = 65536

Json = dict[str, Any]


def resolve_socket(path: str | os.PathLike[str] | None) -> Path:
    """The socket to use: `path`, or the platform default (see daemon.paths)."""
    if path is not None:
        return Path(path).expanduser()
    from daemon.paths import default_socket_path

    return default_socket_path()


class _Client:
    """What both clients hold: where the daemon is, how long to wait, the conversation."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = resolve_socket(socket_path)
        self.timeout = timeout
        self._conversation = Conversation()
        # The daemon's answer to the last `subscribe` (resync, reason, cursor).
        self.subscription: Json | None = None


class MusicdClient(_Client):
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

    ping = blocking(calls.ping)
    status = blocking(calls.status)
    stats = blocking(calls.stats)
    flush = blocking(calls.flush)
    rescan = blocking(calls.rescan)
    track = blocking(calls.track)
    album_tracks = blocking(calls.album_tracks)
    cache_get = blocking(calls.cache_get)
    cache_put = blocking(calls.cache_put)
    invalidate = blocking(calls.invalidate)
    invalidate_many = blocking(calls.invalidate_many)
    cache_clear = blocking(calls.cache_clear)
    shutdown = blocking(calls.shutdown)
    changes_since = blocking(calls.changes_since)
    iter_changes = blocking_pages(calls.iter_changes)
    cursor_get = blocking(calls.cursor_get)
    cursor_commit = blocking(calls.cursor_commit)
    tracks_list = blocking(calls.tracks_list)
    iter_track_pages = blocking_pages(calls.iter_track_pages)
    cache_get_many = blocking(calls.cache_get_many)
    cache_put_many = blocking(calls.cache_put_many)
    cache_cleanup = blocking(calls.cache_cleanup)

    subscribe = blocking_events(calls.subscribe)

    def _follow(self, subscription: calls.Subscription) -> Iterator[Json]:
        request = subscription.call
        self.subscription = self.call(request.method, **request.params)
        while True:
            while (event := self._conversation.next_event()) is not None:
                yield event
            try:
                self._conversation.note(self._read_message(subscription.event_timeout))
            except ConnectionClosed:
                return

    def wait_closed(self, timeout: float) -> None:
        """Wait until the daemon closes this connection (after `shutdown`); bounded."""
        try:
            while True:
                self._read_message(timeout)
        except ConnectionClosed:
            return


class AsyncMusicdClient(_Client):
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

    ping = awaiting(calls.ping)
    status = awaiting(calls.status)
    stats = awaiting(calls.stats)
    flush = awaiting(calls.flush)
    rescan = awaiting(calls.rescan)
    track = awaiting(calls.track)
    album_tracks = awaiting(calls.album_tracks)
    cache_get = awaiting(calls.cache_get)
    cache_put = awaiting(calls.cache_put)
    invalidate = awaiting(calls.invalidate)
    invalidate_many = awaiting(calls.invalidate_many)
    cache_clear = awaiting(calls.cache_clear)
    shutdown = awaiting(calls.shutdown)
    changes_since = awaiting(calls.changes_since)
    iter_changes = awaiting_pages(calls.iter_changes)
    cursor_get = awaiting(calls.cursor_get)
    cursor_commit = awaiting(calls.cursor_commit)
    tracks_list = awaiting(calls.tracks_list)
    iter_track_pages = awaiting_pages(calls.iter_track_pages)
    cache_get_many = awaiting(calls.cache_get_many)
    cache_put_many = awaiting(calls.cache_put_many)
    cache_cleanup = awaiting(calls.cache_cleanup)

    subscribe = awaiting_events(calls.subscribe)

    async def _follow(self, subscription: calls.Subscription) -> AsyncIterator[Json]:
        import anyio

        request, event_timeout = subscription.call, subscription.event_timeout
        self.subscription = await self.call(request.method, **request.params)
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
