"""One control connection: a line reader, a serialised writer with a send timeout, and maybe a
subscription. A client that stops reading is given up on (`Disconnected`), never waited for.

What a connection holds is bounded: a request line of at most `max_line_bytes` being read, one
answer being sent. What all of them hold together is bounded too (`Holdings`): past
`MAX_HELD_BYTES`, the connection holding most (half-sent lines, answers it does not read) is
cut off, so well-behaved clients are not starved by a hostile one's buffers.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final

import anyio
import orjson
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskGroup

from daemon.control.log_limit import LogLimit
from daemon.control.protocol import INTERNAL_ERROR, MAX_LINE_BYTES, error_message
from daemon.journal.hub import EventHub, Subscription

log = structlog.get_logger("daemon.control.server")

# A refusal or a last notice to a client that may not be reading gets this long.
NOTICE_TIMEOUT_SECONDS: Final = 1.0
# Bytes of request lines being read and answers being sent, of all connections together.
MAX_HELD_BYTES: Final = 32 * 1024 * 1024
# A read from the socket takes at most this much.
_CHUNK: Final = 65536


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 1024
    # A connection that is not subscribed and sends nothing for this long is closed.
    idle_timeout_seconds: float = 300.0
    # A response or notification the client does not take within this long ends the connection.
    send_timeout_seconds: float = 10.0
    max_line_bytes: int = MAX_LINE_BYTES


class Holdings:
    """What all connections hold together (partial request lines, unsent answers), bounded:
    past `limit`, the connection holding most is cut off ("memory_bound")."""

    def __init__(self, limit: int = MAX_HELD_BYTES, log_limit: LogLimit | None = None) -> None:
        self.limit = limit
        # A hostile client can be cut off as fast as it sends: its lines count in the clients'
        # allowance like its requests' (none to count against in tests of a lone connection).
        self.log_limit = log_limit
        self.total = 0
        self.peak = 0
        self.cut_off = 0
        self._held: dict[Connection, int] = {}

    def hold(self, conn: Connection, nbytes: int) -> None:
        """Set what `conn` holds now; may cut off the connection holding most (maybe `conn`)."""
        self.total += nbytes - self._held.get(conn, 0)
        if nbytes:
            self._held[conn] = nbytes
        else:
            self._held.pop(conn, None)
        self.peak = max(self.peak, self.total)
        while self.total > self.limit:
            victim = max(self._held, key=self._held.__getitem__)
            self.total -= self._held.pop(victim)
            self.cut_off += 1
            if self.log_limit is None or self.log_limit.allow(victim.number):
                victim.log.warning("connection_cut_off", reason="memory_bound", total=self.total)
            victim.close("memory_bound")


class Disconnected(Exception):
    """The connection is gone or was given up on; its task ends."""


@dataclass
class Outcome:
    message: dict[str, Any]
    after: Callable[[], None] | None = None


def encode(message: dict[str, Any], log: Any, *, line: bool = True) -> bytes:
    """A message's JSON (a line of its own unless `line` is false); an internal error in its
    place when the answer is not JSON."""
    option = orjson.OPT_APPEND_NEWLINE if line else None
    try:
        return orjson.dumps(message, option=option)
    except TypeError:
        log.exception("response_unencodable")
        req_id = message.get("id")
        return orjson.dumps(
            error_message(req_id, INTERNAL_ERROR, "internal error: the answer is not JSON"),
            option=option,
        )


class Connection:
    """One client: a line reader, a serialised writer, and maybe a subscription."""

    def __init__(
        self,
        number: int,
        stream: SocketStream,
        limits: Limits,
        hub: EventHub,
        holdings: Holdings | None = None,
    ) -> None:
        self.number = number
        self._hub = hub
        self.stream = stream
        self.limits = limits
        self.holdings = holdings if holdings is not None else Holdings()
        self._buffer = bytearray()
        self._scanned = 0
        self._unsent = 0
        self._answer = 0
        self.log = log.bind(conn=number)
        self.subscription: Subscription | None = None
        self.requests = 0
        self.close_reason: str | None = None
        # The connection's own tasks (a subscription's events), while `serve` runs.
        self._tasks: TaskGroup | None = None
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._raw: socket.socket = stream.extra(SocketAttribute.raw_socket)

    @property
    def pending(self) -> bytes:
        """What was read after the last whole line."""
        return bytes(self._buffer)

    @property
    def buffered(self) -> int:
        """How many bytes were read after the last whole line."""
        return len(self._buffer)

    def _hold(self) -> None:
        self.holdings.hold(self, len(self._buffer) + self._answer + self._unsent)

    def hold_answer(self, nbytes: int) -> None:
        """An answer of `nbytes` is being built or waits to be sent (0: it is being sent,
        and what the socket did not take is counted as unsent)."""
        self._answer = nbytes
        self._hold()

    async def serve(self, answer: Callable[[Connection], Awaitable[None]]) -> None:
        """Run `answer` (reading and answering requests) and the tasks started with
        `start_soon` until all of them end; `close` stops them all."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            await answer(self)

    def start_soon(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `fn` beside the requests until the connection closes (not once it is closed)."""
        if self._tasks is not None and self.close_reason is None:
            self._tasks.start_soon(fn)

    def count_request(self) -> None:
        self.requests += 1

    def subscribe(
        self, types: Iterable[str] | None, exclude_origins: Iterable[str] = ()
    ) -> Subscription:
        """This connection's subscription to the hub's events, ended by `release`."""
        self.subscription = self._hub.subscribe(
            types, label=f"conn-{self.number}", exclude_origins=exclude_origins
        )
        return self.subscription

    def release(self) -> None:
        """The connection ended: it holds nothing any more, its subscription ended."""
        self._buffer = bytearray()
        self._unsent = self._answer = 0
        self._hold()
        if self.subscription is not None:
            self._hub.unsubscribe(self.subscription)
            self.subscription.receive.close()

    async def receive_line(self) -> bytes:
        """The next request line, without its newline.

        Raises anyio.DelimiterNotFound for a line over `max_line_bytes`, anyio.IncompleteRead
        at the end of the stream (`pending` holds what came after the last newline).
        """
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                self._hold()
                return line
            self._scanned = len(self._buffer)
            if len(self._buffer) > self.limits.max_line_bytes:
                raise anyio.DelimiterNotFound(self.limits.max_line_bytes)
            try:
                chunk = await self.stream.receive(_CHUNK)
            except anyio.EndOfStream:
                raise anyio.IncompleteRead from None
            self._buffer += chunk
            self._hold()

    def peer_closed(self) -> bool:
        """Whether the client closed its socket (not only its sending side): requests it sent
        ahead are then not worth running. One poll(2), no wait."""
        poller = select.poll()
        poller.register(self._raw.fileno(), select.POLLIN)
        return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()

    async def send(self, message: Any, *, within: float | None = None) -> None:
        """Write one message line; raise Disconnected if the client is gone or not reading."""
        await self.send_encoded(encode(message, self.log), within=within)

    async def send_encoded(self, data: bytes, *, within: float | None = None) -> None:
        """Write bytes that are one or more whole message lines; as `send`."""
        if self.close_reason is not None:
            # Given up on (a line may have been cut short): nothing more goes after it.
            raise Disconnected
        try:
            await self._write(data, within or self.limits.send_timeout_seconds)
        except TimeoutError:
            self.close("send_timeout")
            raise Disconnected from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.close("peer_gone")
            raise Disconnected from None

    async def _write(self, data: bytes, within: float) -> None:
        """Send `data` whole, after any message already being sent, within `within` seconds
        in all (waiting behind another message included).

        Most answers fit the socket's buffer: they go out at once, without the event-loop
        round trips of an awaited lock, a cancel scope and the stream's own checkpoint (a
        third of the loop's work per `cache.get`). Only a client that is not reading makes
        the rest wait. This keeps messages whole because anyio's Unix socket stream writes
        straight to the socket, never from a buffer of its own: once a send returns, every
        byte of it is in the kernel, ahead of the next raw send.
        """
        deadline = anyio.current_time() + within
        if self._send_lock.locked():
            with anyio.fail_at(deadline):
                await self._send_lock.acquire()
        else:
            await self._send_lock.acquire()  # fast_acquire: taken without a yield
        try:
            try:
                sent = self._raw.send(data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                # Held until the client took it: counted with every connection's holdings.
                self._unsent = len(data) - sent
                self._hold()
                try:
                    with anyio.fail_at(deadline):
                        # A view, not a copy of what is left (up to a 4 MiB answer); the
                        # stream sends from a memoryview of what it is given anyway.
                        await self.stream.send(memoryview(data)[sent:])  # type: ignore[arg-type]
                finally:
                    self._unsent = 0
                    self._hold()
        finally:
            self._send_lock.release()
