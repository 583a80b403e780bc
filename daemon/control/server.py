"""The control server: JSON-RPC 2.0 over a Unix socket, one connection task per client.

Every connection is isolated: a bad request gets an error object and the connection goes on; a
handler that raises gets -32603 and is logged; a client that stops reading is cut off by a send
timeout; a subscriber that falls behind is told and disconnected. None of it blocks the daemon or
another client. See protocol.py for the messages and error codes.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from dataclasses import replace
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson
import structlog
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus

from daemon.control.api import DaemonApi
from daemon.control.connection import (
    NOTICE_TIMEOUT_SECONDS,
    Connection,
    Disconnected,
    Holdings,
    Limits,
)
from daemon.control.endpoint import (
    ensure_socket_dir,
    fit_connection_limit,
    peer_refusal,
    peer_uid,
    remove_socket_if_ours,
    socket_ident,
)
from daemon.control.log_limit import LogLimit
from daemon.control.protocol import (
    PEER_REFUSED,
    REQUEST_TOO_LARGE,
    TOO_MANY_CONNECTIONS,
    error_message,
)
from daemon.control.requests import Answer, Requests
from daemon.errors import describe_os_error

# Limits is part of ControlServer's signature.
__all__ = ["ControlServer", "Limits"]

log = structlog.get_logger(__name__)


class ControlServer:
    """Accepts connections and answers their requests against the running daemon."""

    def __init__(self, daemon: DaemonApi, limits: Limits) -> None:
        self.daemon = daemon
        self.limits = limits
        self.uid = os.getuid()
        self.open = 0
        self.total = 0
        self.refused = 0
        self.log_limit = LogLimit()
        self.holdings = Holdings(log_limit=self.log_limit)
        self.answering = Requests(daemon, self.control_stats, self.log_limit)

    def control_stats(self) -> dict[str, Any]:
        return {
            "connections_open": self.open,
            "connections_total": self.total,
            "connections_refused": self.refused,
            "max_connections": self.limits.max_connections,
            "requests": self.answering.requests,
            "errors": self.answering.errors,
            "held_bytes": self.holdings.total,
            "held_bytes_peak": self.holdings.peak,
            "max_held_bytes": self.holdings.limit,
            "cut_off_memory_bound": self.holdings.cut_off,
        }

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind the socket, report readiness, serve until cancelled, then remove the socket.

        The socket file is removed only if it is still the one bound here. Accepts as many
        connections as the open-file limit leaves room for; the daemon raises that limit at
        start-up (daemon/process.py), a program embedding the server calls
        `apply_process_policy` itself or gets fewer (128 under macOS's default of 256).
        """
        path = self.daemon.socket_path
        # The daemon refused a live musicd on this path before it opened anything (app.py,
        # prepare_socket_path: one check, with the hint its invocation gives); binding needs
        # only the private directory.
        await anyio.to_thread.run_sync(ensure_socket_dir, path.parent)
        fitted = fit_connection_limit(self.limits.max_connections)
        self.limits = replace(self.limits, max_connections=fitted)
        listener = await anyio.create_unix_listener(path, mode=0o600)
        ident = socket_ident(path)
        try:
            async with listener, anyio.create_task_group() as tg:
                log.info("control_listening", socket=str(path), max_connections=fitted)
                tg.start_soon(self.log_limit.run)
                task_status.started()
                await self._accept_loop(listener, tg)
        finally:
            remove_socket_if_ours(path, ident)

    async def _accept_loop(self, listener: SocketListener, tg: TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as err:
                # Out of file descriptors (or similar): back off instead of crashing the daemon.
                log.warning("accept_failed", error=describe_os_error(err))
                await anyio.sleep(0.1)
                continue
            self.total += 1
            tg.start_soon(self._serve_connection, stream, self.total)

    def _refusal(self, stream: SocketStream) -> tuple[int, str] | None:
        raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
        try:
            reason = peer_refusal(peer_uid(raw), self.uid)
        except OSError as err:
            reason = f"cannot check the peer's credentials: {describe_os_error(err)}"
        if reason is not None:
            return PEER_REFUSED, reason
        if self.open >= self.limits.max_connections:
            return TOO_MANY_CONNECTIONS, (
                f"too many connections ({self.open} open, the limit is "
                f"{self.limits.max_connections}); close some and try again"
            )
        return None

    async def _serve_connection(self, stream: SocketStream, number: int) -> None:
        async with stream:
            refusal = self._refusal(stream)
            if refusal is not None:
                self.refused += 1
                code, message = refusal
                if self.log_limit.allow(number):
                    log.warning("connection_refused", conn=number, code=code, reason=message)
                with (
                    contextlib.suppress(
                        anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
                    ),
                    anyio.move_on_after(NOTICE_TIMEOUT_SECONDS),
                ):
                    await stream.send(orjson.dumps(error_message(None, code, message)) + b"\n")
                return
            conn = Connection(number, stream, self.limits, self.daemon.hub, self.holdings)
            self.open += 1
            conn.log.debug("client_connected", open=self.open)
            try:
                await conn.serve(self._answer_requests)
            finally:
                self.open -= 1
                conn.release()
                conn.log.debug(
                    "client_disconnected",
                    requests=conn.requests,
                    reason=conn.close_reason or "stopped",
                )

    async def _answer_requests(self, conn: Connection) -> None:
        try:
            await self._read_requests(conn)
        except Disconnected:
            pass
        except Exception:
            # Catch site 2: one connection's failure never reaches the server.
            conn.log.exception("connection_failed")
        conn.close("eof")

    async def _read_requests(self, conn: Connection) -> None:
        limits = self.limits
        while True:
            idle = math.inf if conn.subscription is not None else limits.idle_timeout_seconds
            with anyio.move_on_after(idle) as idle_scope:
                try:
                    line = await conn.receive_line()
                except anyio.IncompleteRead:
                    # The client closed its end; a last request without a newline still counts.
                    rest = conn.pending
                    if rest.strip():
                        await self._send_answer(conn, await self.answering.answer(conn, rest))
                    return
                except anyio.DelimiterNotFound:
                    await self._refuse_oversized(conn)
                    return
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    conn.close("peer_gone")
                    return
            if idle_scope.cancelled_caught:
                conn.close("idle_timeout")
                return
            if conn.buffered and conn.peer_closed():
                # Requests sent ahead by a client that left: their answers would go nowhere.
                conn.close("peer_gone")
                return
            answer = await self.answering.answer(conn, line)
            conn.hold_answer(len(answer.data))
            line = b""  # not kept while a client that does not read holds up the answer
            await self._send_answer(conn, answer)
            if conn.buffered:
                # Requests sent ahead of their answers: let the other connections have a turn
                # (an answer that fits the socket buffer is sent without one).
                await anyio.lowlevel.checkpoint()

    async def _refuse_oversized(self, conn: Connection) -> None:
        message = (
            f"request too large: a request line may be at most {self.limits.max_line_bytes} "
            "bytes; closing the connection"
        )
        self.answering.oversized(conn, message)
        with contextlib.suppress(Disconnected):
            await conn.send(
                error_message(None, REQUEST_TOO_LARGE, message), within=NOTICE_TIMEOUT_SECONDS
            )
        conn.close("request_too_large")

    async def _send_answer(self, conn: Connection, answer: Answer) -> None:
        try:
            conn.hold_answer(0)
            if answer.data:
                await conn.send_encoded(answer.data)
        finally:
            # Even when the client left before reading the answer: a shutdown it asked for
            # still happens (a subscription does not start on a closed connection).
            for after in answer.afters:
                after()
