"""Clients of the control socket: `MusicdClient` (blocking) and `AsyncMusicdClient` (anyio).

Both speak JSON-RPC 2.0, one JSON object per line (see daemon/control/protocol.py), send one
request at a time per client and raise `RemoteError` when the daemon answers with an error,
`NotRunning` when nothing listens on the socket. The synchronous one imports neither anyio nor
pydantic, so a script (and the `musicd` command) starts fast. A client is not thread-safe: give
each thread its own.

    with MusicdClient() as musicd:
        musicd.cache_put("Miles Davis", "Kind of Blue", "musicbrainz", data={"year": 1959})
        for event in musicd.subscribe(["track_modified"]):
            print(event["changed"], event["old"], event["new"])
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import orjson

from daemon.client_feed import AsyncFeedCalls, FeedCalls
from daemon.errors import DaemonError, NotRunning, RemoteError

if TYPE_CHECKING:
    import anyio
    from anyio.abc import SocketStream
    from anyio.streams.buffered import BufferedByteReceiveStream

DEFAULT_TIMEOUT: Final = 30.0
# An answer (a big album's tracks, a big cached document) may be long, but not unbounded.
MAX_MESSAGE_BYTES: Final = 256 * 1024 * 1024
_CHUNK: Final = 65536
_UNREACHABLE: Final = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR})

Json = dict[str, Any]


class ClientError(DaemonError):
    """The conversation with the daemon failed (timeout, dropped connection, bad answer)."""


class ClientTimeout(ClientError):
    """No answer (or, while subscribed, no event) came in time."""


class ConnectionClosed(ClientError):
    """The daemon closed the connection (it stopped, or gave up on this client)."""


class SubscriptionDropped(ClientError):
    """The daemon cut this subscriber off because it fell behind; resubscribe and resync."""

    def __init__(self, reason: str, last_seq: int | None) -> None:
        super().__init__(f"the daemon dropped the subscription: {reason}")
        self.reason = reason
        self.last_seq = last_seq


def resolve_socket(path: str | os.PathLike[str] | None) -> Path:
    """The socket to use: `path`, or the platform default (see daemon.paths)."""
    if path is not None:
        return Path(path).expanduser()
    from daemon.paths import default_socket_path

    return default_socket_path()


def _connect_error(path: Path, err: OSError) -> DaemonError:
    if isinstance(err, FileNotFoundError | ConnectionRefusedError) or err.errno in _UNREACHABLE:
        return NotRunning(
            f"the daemon is not running (nothing listens on {path}); start it with 'musicd run' "
            "or 'musicd launchd install'"
        )
    if isinstance(err, PermissionError):
        return ClientError(f"cannot connect to {path}: permission denied (another user's musicd?)")
    return ClientError(f"cannot connect to {path}: {err.strerror or err}")


def _request(req_id: int, method: str, params: Json) -> bytes:
    message: Json = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if params:
        message["params"] = params
    return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)


def _decode(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise ClientError(f"musicd sent something that is not JSON: {err}") from None


def _is_notification(message: Any) -> bool:
    return isinstance(message, dict) and "method" in message and "id" not in message


def _result(message: Any, req_id: int, method: str) -> Any:
    """The result of a response to request `req_id`, or raise RemoteError."""
    if not isinstance(message, dict) or ("result" not in message and "error" not in message):
        raise ClientError(f"musicd sent an unexpected message: {str(message)[:200]}")
    error = message.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise ClientError(f"musicd sent a malformed error: {str(error)[:200]}")
        raise RemoteError(
            str(error.get("message", "unknown error")), int(error.get("code", 0)), error.get("data")
        )
    if message.get("id") != req_id:
        raise ClientError(
            f"musicd answered request {message.get('id')!r} while {method} "
            f"(request {req_id}) was waiting"
        )
    return message["result"]


def _dropped(message: Json) -> SubscriptionDropped:
    params = message.get("params") or {}
    return SubscriptionDropped(str(params.get("reason", "unknown")), params.get("last_seq"))


def _subscribe_params(types: Iterable[str] | None, since: str | None = None) -> Json:
    params: Json = {} if types is None else {"types": list(types)}
    if since is not None:
        params["since"] = since
    return params


def _put_params(
    success: bool, data: Any, metadata: Json | None, ttl_seconds: float | None = None
) -> Json:
    params: Json = {"success": success, "data": data}
    if metadata is not None:
        params["metadata"] = metadata
    if ttl_seconds is not None:
        params["ttl_seconds"] = ttl_seconds
    return params


class MusicdClient(FeedCalls):
    """A blocking client on a plain socket: cheap to create, no event loop.

    Args:
        socket_path: the daemon's socket (default: the platform default; see `musicd status`).
        timeout: seconds to wait for an answer (None: forever).
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = resolve_socket(socket_path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._next_id = 0
        self._pending: deque[Json] = deque()
        # The daemon's answer to the last `subscribe` (resync, reason, cursor).
        self.subscription: Json | None = None

    # -- connection -----------------------------------------------------------------------

    def connect(self) -> Self:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.socket_path))
            except OSError as err:
                sock.close()
                raise _connect_error(self.socket_path, err) from None
            self._sock = sock
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buffer.clear()

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
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if line.strip():
                    return _decode(line)
                start = 0
                continue
            start = len(self._buffer)
            if start > MAX_MESSAGE_BYTES:
                self.close()
                raise ClientError("musicd sent a message larger than the client accepts")
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
            self._buffer += chunk

    # -- requests ---------------------------------------------------------------------------

    def call(self, method: str, /, **params: Any) -> Any:
        """Send one request and return its result; RemoteError if the daemon refuses it."""
        sock = self.connect()._sock
        assert sock is not None
        self._next_id += 1
        req_id = self._next_id
        try:
            sock.settimeout(self.timeout)
            sock.sendall(_request(req_id, method, params))
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
                message = self._read_message(self.timeout)
                if not _is_notification(message):
                    return _result(message, req_id, method)
                self._pending.append(message)  # an event that arrived before the answer
        except ClientTimeout:
            self.close()  # a late answer must not be taken for the next request's
            raise ClientTimeout(
                f"musicd did not answer {method} within {self.timeout:g} s"
            ) from None

    def ping(self) -> Json:
        result: Json = self.call("ping")
        return result

    def status(self) -> Json:
        result: Json = self.call("status")
        return result

    def stats(self) -> Json:
        result: Json = self.call("stats")
        return result

    def flush(self) -> Json:
        """Write the state to disk now; returns once it is there (RemoteError if it failed)."""
        result: Json = self.call("flush")
        return result

    def rescan(self, *, accept_removals: bool = False) -> Json:
        """Read the whole library now; returns the counts of the events it produced."""
        result: Json = self.call("rescan", accept_removals=accept_removals)
        return result

    def track(self, persistent_id: str) -> Json | None:
        result: Json | None = self.call("tracks.get", persistent_id=persistent_id)
        return result

    def album_tracks(self, artist: str, album: str) -> list[Json]:
        result: list[Json] = self.call("tracks.album", artist=artist, album=album)
        return result

    def cache_get(self, artist: str, album: str, source: str) -> Json | None:
        """The cached answer for an album from `source`, or None."""
        result: Json | None = self.call("cache.get", artist=artist, album=album, source=source)
        return result

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
        result: Json = self.call(
            "cache.put",
            artist=artist,
            album=album,
            source=source,
            **_put_params(success, data, metadata, ttl_seconds),
        )
        return result

    def invalidate(self, artist: str, album: str) -> int:
        """Drop every source's answer for an album; returns how many were dropped."""
        return int(self.call("cache.invalidate", artist=artist, album=album)["removed"])

    def cache_clear(self) -> int:
        return int(self.call("cache.clear")["removed"])

    def shutdown(self) -> Json:
        """Ask the daemon to stop (like SIGTERM); it answers before it starts stopping."""
        result: Json = self.call("shutdown")
        return result

    def subscribe(
        self,
        types: Iterable[str] | None = None,
        *,
        event_timeout: float | None = None,
        since: str | None = None,
    ) -> Iterator[Json]:
        """Yield every event (or those of `types`) as it happens, in order, forever.

        With `since` (a cursor), the events after it come first, then live ones, with no gap;
        `self.subscription` holds the daemon's answer (`resync: true` when that position could
        not be followed). Ends when the daemon closes the connection (it stopped); raises
        SubscriptionDropped if the daemon cut this subscriber off for falling behind, and
        ClientTimeout if `event_timeout` seconds pass without an event (None: wait forever).
        """
        self.subscription = self.call("subscribe", **_subscribe_params(types, since))
        while True:
            while self._pending:
                message = self._pending.popleft()
                if message.get("method") == "subscription_dropped":
                    raise _dropped(message)
                if message.get("method") == "event":
                    yield message["params"]
            try:
                message = self._read_message(event_timeout)
            except ConnectionClosed:
                return
            if _is_notification(message):
                self._pending.append(message)

    def wait_closed(self, timeout: float) -> None:
        """Wait until the daemon closes this connection (after `shutdown`); bounded."""
        try:
            while True:
                self._read_message(timeout)
        except ConnectionClosed:
            return


class AsyncMusicdClient(AsyncFeedCalls):
    """The same client for anyio code (asyncio or trio): `async with AsyncMusicdClient() as c`."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = resolve_socket(socket_path)
        self.timeout = timeout
        self._stream: SocketStream | None = None
        self._reader: BufferedByteReceiveStream | None = None
        self._next_id = 0
        self._pending: deque[Json] = deque()
        # The daemon's answer to the last `subscribe` (resync, reason, cursor).
        self.subscription: Json | None = None
        self._lock: anyio.Lock | None = None

    async def connect(self) -> Self:
        import anyio
        from anyio.streams.buffered import BufferedByteReceiveStream

        if self._stream is None:
            try:
                self._stream = await anyio.connect_unix(self.socket_path)
            except OSError as err:
                raise _connect_error(self.socket_path, err) from None
            self._reader = BufferedByteReceiveStream(self._stream)
            self._lock = anyio.Lock()
        return self

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream, self._reader = self._stream, None, None
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
        assert self._reader is not None
        while True:
            try:
                line = await self._reader.receive_until(b"\n", MAX_MESSAGE_BYTES)
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                await self.aclose()
                raise ConnectionClosed("musicd closed the connection") from None
            except anyio.DelimiterNotFound:
                await self.aclose()
                raise ClientError("musicd sent a message larger than the client accepts") from None
            if line.strip():
                return _decode(line)

    async def call(self, method: str, /, **params: Any) -> Any:
        """Send one request and return its result; RemoteError if the daemon refuses it."""
        import anyio

        await self.connect()
        assert self._stream is not None and self._lock is not None
        async with self._lock:
            self._next_id += 1
            req_id = self._next_id
            try:
                with anyio.fail_after(self.timeout):
                    await self._stream.send(_request(req_id, method, params))
                    while True:
                        message = await self._read_message()
                        if _is_notification(message):
                            self._pending.append(message)
                            continue
                        return _result(message, req_id, method)
            except TimeoutError:
                await self.aclose()
                raise ClientTimeout(
                    f"musicd did not answer {method} within {self.timeout:g} s"
                ) from None
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.aclose()
                raise ConnectionClosed("lost the connection to musicd") from None

    async def ping(self) -> Json:
        result: Json = await self.call("ping")
        return result

    async def status(self) -> Json:
        result: Json = await self.call("status")
        return result

    async def stats(self) -> Json:
        result: Json = await self.call("stats")
        return result

    async def flush(self) -> Json:
        result: Json = await self.call("flush")
        return result

    async def rescan(self, *, accept_removals: bool = False) -> Json:
        result: Json = await self.call("rescan", accept_removals=accept_removals)
        return result

    async def track(self, persistent_id: str) -> Json | None:
        result: Json | None = await self.call("tracks.get", persistent_id=persistent_id)
        return result

    async def album_tracks(self, artist: str, album: str) -> list[Json]:
        result: list[Json] = await self.call("tracks.album", artist=artist, album=album)
        return result

    async def cache_get(self, artist: str, album: str, source: str) -> Json | None:
        result: Json | None = await self.call(
            "cache.get", artist=artist, album=album, source=source
        )
        return result

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
        result: Json = await self.call(
            "cache.put",
            artist=artist,
            album=album,
            source=source,
            **_put_params(success, data, metadata, ttl_seconds),
        )
        return result

    async def invalidate(self, artist: str, album: str) -> int:
        return int((await self.call("cache.invalidate", artist=artist, album=album))["removed"])

    async def cache_clear(self) -> int:
        return int((await self.call("cache.clear"))["removed"])

    async def shutdown(self) -> Json:
        result: Json = await self.call("shutdown")
        return result

    async def subscribe(
        self,
        types: Iterable[str] | None = None,
        *,
        event_timeout: float | None = None,
        since: str | None = None,
    ) -> AsyncIterator[Json]:
        """`async for event in client.subscribe():` every event as it happens, in order.

        `since` replays the events after a cursor first (see the blocking client). Ends when the
        daemon closes the connection; raises SubscriptionDropped if the daemon cut this
        subscriber off for falling behind, ClientTimeout after `event_timeout` s without one.
        """
        import anyio

        self.subscription = await self.call("subscribe", **_subscribe_params(types, since))
        while True:
            while self._pending:
                message = self._pending.popleft()
                if message.get("method") == "subscription_dropped":
                    raise _dropped(message)
                if message.get("method") == "event":
                    yield message["params"]
            try:
                with anyio.fail_after(event_timeout):
                    message = await self._read_message()
            except ConnectionClosed:
                return
            except TimeoutError:
                raise ClientTimeout(f"no event from musicd within {event_timeout:g} s") from None
            if _is_notification(message):
                self._pending.append(message)
