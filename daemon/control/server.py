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
import time
from collections.abc import Awaitable, Callable
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
    Limits,
    Outcome,
    encode,
)
from daemon.control.endpoint import (
    fit_connection_limit,
    peer_refusal,
    peer_uid,
    prepare_socket_path,
    remove_socket_if_ours,
    socket_ident,
)
from daemon.control.log_limit import LogLimit
from daemon.control.methods import DaemonMethods, Method, Reply, ms_since
from daemon.control.program_methods import ProgramMethods
from daemon.control.protocol import (
    ANSWER_TOO_LARGE,
    BATCH_TOO_LARGE,
    DAEMON_BUSY,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_ANSWER_BYTES,
    MAX_BATCH_ITEMS,
    PARSE_ERROR,
    PEER_REFUSED,
    REQUEST_TOO_LARGE,
    TOO_MANY_CONNECTIONS,
    ProtocolError,
    error_message,
    parse_request,
    request_id,
    result_message,
)
from daemon.control.spec import CHEAP_METHODS, HandlerMismatch, check_handlers, validate_params
from daemon.control.subscriptions import Subscriptions
from daemon.errors import DaemonError, StateError, describe_os_error

# Limits is part of serve_control's signature.
__all__ = ["ControlServer", "Limits", "serve_control"]

log = structlog.get_logger(__name__)

Handler = Callable[[Connection, Any], Awaitable[Reply]]


def _without_conn(method: Method) -> Handler:
    async def handler(conn: Connection, params: Any) -> Reply:
        return await method(params)

    return handler


class ControlServer:
    """Accepts connections and answers their requests against the running daemon."""

    def __init__(self, daemon: DaemonApi, limits: Limits) -> None:
        self.daemon = daemon
        self.limits = limits
        self.uid = os.getuid()
        self.open = 0
        self.total = 0
        self.refused = 0
        self.requests = 0
        self.errors = 0
        self.log_limit = LogLimit()
        state, programs = (
            DaemonMethods(daemon, self.control_stats).table(),
            ProgramMethods(daemon).table(),
        )
        if twice := sorted(state.keys() & programs.keys()):
            raise HandlerMismatch(f"more than one handler for {', '.join(twice)}")
        table = {**state, **programs}
        self.methods: dict[str, Handler] = {name: _without_conn(fn) for name, fn in table.items()}
        self.methods["subscribe"] = Subscriptions(daemon).subscribe
        # A method without a handler, or a handler without a method, stops the daemon here.
        check_handlers(self.methods)

    def control_stats(self) -> dict[str, Any]:
        return {
            "connections_open": self.open,
            "connections_total": self.total,
            "connections_refused": self.refused,
            "max_connections": self.limits.max_connections,
            "requests": self.requests,
            "errors": self.errors,
        }

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind the socket, report readiness, serve until cancelled, then remove the socket.

        The socket file is removed only if it is still the one bound here.
        """
        path = self.daemon.socket_path
        await anyio.to_thread.run_sync(prepare_socket_path, path)
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
            conn = Connection(number, stream, self.limits)
            self.open += 1
            conn.log.debug("client_connected", open=self.open)
            try:
                async with anyio.create_task_group() as tg:
                    conn.scope, conn.task_group = tg.cancel_scope, tg
                    try:
                        await self._read_requests(conn)
                    except Disconnected:
                        pass
                    except Exception:
                        # Catch site 2: one connection's failure never reaches the server.
                        conn.log.exception("connection_failed")
                    conn.close("eof")
            finally:
                self.open -= 1
                if conn.subscription is not None:
                    self.daemon.hub.unsubscribe(conn.subscription)
                    conn.subscription.receive.close()
                conn.log.debug(
                    "client_disconnected",
                    requests=conn.requests,
                    reason=conn.close_reason or "stopped",
                )

    async def _read_requests(self, conn: Connection) -> None:
        limits = self.limits
        while True:
            idle = math.inf if conn.subscription is not None else limits.idle_timeout_seconds
            with anyio.move_on_after(idle) as idle_scope:
                try:
                    line = await conn.reader.receive_until(b"\n", limits.max_line_bytes)
                except anyio.IncompleteRead:
                    # The client closed its end; a last request without a newline still counts.
                    rest = conn.reader.buffer
                    if rest.strip():
                        await self._handle_line(conn, rest)
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
            await self._handle_line(conn, line)
            if conn.reader.buffer:
                # Requests sent ahead of their answers: let the other connections have a turn
                # (an answer that fits the socket buffer is sent without one).
                await anyio.lowlevel.checkpoint()

    async def _refuse_oversized(self, conn: Connection) -> None:
        message = (
            f"request too large: a request line may be at most {self.limits.max_line_bytes} "
            "bytes; closing the connection"
        )
        self.errors += 1
        self._log_line(
            conn, "warning", "request_rejected", method=None, code=REQUEST_TOO_LARGE, error=message
        )
        with contextlib.suppress(Disconnected):
            await conn.send(
                error_message(None, REQUEST_TOO_LARGE, message), within=NOTICE_TIMEOUT_SECONDS
            )
        conn.close("request_too_large")

    def _log_line(self, conn: Connection, level: str, event: str, **fields: Any) -> None:
        """A line a client's request causes, within the clients' allowance (log_limit.py)."""
        if self.log_limit.allow(conn.number):
            getattr(conn.log, level)(event, **fields)

    async def _handle_line(self, conn: Connection, line: bytes) -> None:
        if not line.strip():
            return
        started = time.perf_counter()
        error: ProtocolError | None
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            obj, error = None, ProtocolError(PARSE_ERROR, f"parse error: {err}")
        else:
            error = None
            if obj == []:
                error = ProtocolError(INVALID_REQUEST, "invalid request: an empty batch")
            elif isinstance(obj, list) and len(obj) > MAX_BATCH_ITEMS:
                error = ProtocolError(
                    BATCH_TOO_LARGE,
                    f"batch too large: {len(obj)} requests, a batch may hold at most "
                    f"{MAX_BATCH_ITEMS}; none was run, send them in smaller batches",
                )
        if error is not None:
            del obj  # a refused batch is not kept while its error is sent
            conn.requests += 1
            self.requests += 1
            await conn.send(self._rejected(conn, started, None, None, error).message)
            return
        if not isinstance(obj, list):
            outcome = await self._dispatch(conn, obj)
            try:
                await conn.send(outcome.message)
            finally:
                # Even when the client left before reading the answer: a shutdown it asked for
                # still happens (a subscription does not start on a closed connection).
                if outcome.after is not None:
                    outcome.after()
            return
        await self._handle_batch(conn, obj)

    async def _handle_batch(self, conn: Connection, items: list[Any]) -> None:
        """Run a batch's requests in turn, letting other connections in between, and answer
        them in one array of at most about MAX_ANSWER_BYTES: once the answer reached it, the
        rest are not run and each gets ANSWER_TOO_LARGE."""
        parts: list[bytes] = []
        afters: list[Callable[[], None]] = []
        size = 0
        try:
            for index, item in enumerate(items):
                if size >= MAX_ANSWER_BYTES:
                    req_id = request_id(item)
                    self.errors += 1
                    message = error_message(
                        req_id,
                        ANSWER_TOO_LARGE,
                        f"not run: the batch's answer reached {size} bytes before request "
                        f"{index} (at most {MAX_ANSWER_BYTES}); send it in another batch",
                    )
                    parts.append(encode(message, conn.log))
                    continue
                outcome = await self._dispatch(conn, item)
                if outcome.after is not None:
                    afters.append(outcome.after)
                parts.append(encode(outcome.message, conn.log))
                size += len(parts[-1])
                # Let the other connections have a turn between a batch's requests.
                await anyio.lowlevel.checkpoint()
            await conn.send_encoded(b"[" + b",".join(parts) + b"]\n")
        finally:
            for after in afters:
                after()

    async def _dispatch(self, conn: Connection, obj: Any) -> Outcome:
        started = time.perf_counter()
        conn.requests += 1
        self.requests += 1
        req_id = request_id(obj)
        raw_method = obj.get("method") if isinstance(obj, dict) else None
        method = raw_method[:100] if isinstance(raw_method, str) else None
        try:
            request = parse_request(obj)
            params = validate_params(request.method, request.params)
            reply = await self.methods[request.method](conn, params)
        except ProtocolError as err:
            return self._rejected(conn, started, req_id, method, err)
        except DaemonError as err:
            code = DAEMON_BUSY if isinstance(err, StateError) else INTERNAL_ERROR
            return self._rejected(conn, started, req_id, method, ProtocolError(code, str(err)))
        except Exception as err:
            self.errors += 1
            if self.log_limit.allow(conn.number):
                conn.log.exception(
                    "request_failed",
                    method=method,
                    id=req_id,
                    ok=False,
                    duration_ms=ms_since(started),
                )
            text = str(err).splitlines()[0][:200] if str(err) else ""
            message = f"internal error in {method}: {type(err).__name__}"
            return Outcome(
                error_message(req_id, INTERNAL_ERROR, f"{message}: {text}" if text else message)
            )
        fields = {"method": method, "id": req_id, "ok": True, "duration_ms": ms_since(started)}
        if reply.log is None and method in CHEAP_METHODS:
            conn.log.debug("request_handled", **fields)
        else:
            self._log_line(conn, "info", "request_handled", **fields, **(reply.log or {}))
        return Outcome(result_message(request.id, reply.result), reply.after)

    def _rejected(
        self,
        conn: Connection,
        started: float,
        req_id: str | int | None,
        method: str | None,
        err: ProtocolError,
    ) -> Outcome:
        self.errors += 1
        self._log_line(
            conn,
            "warning",
            "request_rejected",
            method=method,
            id=req_id,
            code=err.code,
            error=err.message[:300],
            ok=False,
            duration_ms=ms_since(started),
        )
        return Outcome(error_message(req_id, err.code, err.message, err.data))


async def serve_control(
    daemon: DaemonApi,
    *,
    limits: Limits | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket until cancelled; report readiness once it is bound.

    Accepts as many connections as the open-file limit leaves room for; the daemon raises that
    limit at start-up (daemon/process.py), a program embedding the server calls
    `apply_process_policy` itself or gets fewer (128 under macOS's default of 256).
    """
    await ControlServer(daemon, limits or Limits()).serve(task_status=task_status)
