"""From one request line to its encoded answer: parse, check, run each request of a batch in
turn, log one canonical line each (within the clients' allowance, log_limit.py).

The bounds of protocol.py are kept here: a batch of at most MAX_BATCH_ITEMS, an answer of at
most about MAX_ANSWER_BYTES, and few long lines parsed at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import anyio
import anyio.lowlevel
import orjson

from daemon.control.api import DaemonApi
from daemon.control.connection import Connection, Outcome, encode
from daemon.control.log_limit import LogLimit
from daemon.control.methods import Context, ms_since
from daemon.control.protocol import (
    ANSWER_TOO_LARGE,
    BATCH_TOO_LARGE,
    DAEMON_BUSY,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_ANSWER_BYTES,
    MAX_BATCH_ITEMS,
    PARSE_ERROR,
    REQUEST_TOO_LARGE,
    ProtocolError,
    error_message,
    parse_request,
    request_id,
    result_message,
)
from daemon.control.spec import CHEAP_METHODS, METHODS, validate_params
from daemon.errors import DaemonError, StateError

# A request line longer than this is parsed and run while at most _LONG_LINES_AT_ONCE others
# are: parsed, a line of JSON takes up to 36 times its size, kept while its request runs (a
# put waiting for the writer, a bulk read for its turn). Shorter lines, what clients send
# every day, go straight on.
_LONG_LINE_BYTES: Final = 4 * 1024
_LONG_LINES_AT_ONCE: Final = 2


@dataclass
class Answer:
    """The encoded answer to one request line, and what runs once it was sent."""

    data: bytes
    afters: list[Callable[[], None]]


class Requests:
    """Answers request lines with the handlers of spec.py's table; counts requests and errors."""

    def __init__(
        self,
        daemon: DaemonApi,
        control_stats: Callable[[], dict[str, Any]],
        log_limit: LogLimit,
    ) -> None:
        self.daemon = daemon
        self.control_stats = control_stats
        self.log_limit = log_limit
        self.long_lines = anyio.CapacityLimiter(_LONG_LINES_AT_ONCE)
        self.requests = 0
        self.errors = 0

    def log_line(self, conn: Connection, level: str, event: str, **fields: Any) -> None:
        """A line a client's request causes, within the clients' allowance (log_limit.py)."""
        if self.log_limit.allow(conn.number):
            getattr(conn.log, level)(event, **fields)

    async def answer(self, conn: Connection, line: bytes) -> Answer:
        """The answer to one request line. A long line (a big batch or bulk call) is parsed
        and run while few others are, so what their parsed requests take stays bounded."""
        if len(line) <= _LONG_LINE_BYTES:
            return await self._answer_line(conn, line)
        async with self.long_lines:
            return await self._answer_line(conn, line)

    async def _answer_line(self, conn: Connection, line: bytes) -> Answer:
        if not line.strip():
            return Answer(b"", [])
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
            conn.count_request()
            self.requests += 1
            message = self.rejected(conn, started, None, None, error).message
            return Answer(encode(message, conn.log), [])
        if not isinstance(obj, list):
            outcome = await self._dispatch(conn, obj)
            afters = [outcome.after] if outcome.after is not None else []
            return Answer(encode(outcome.message, conn.log), afters)
        return await self._answer_batch(conn, obj)

    async def _answer_batch(self, conn: Connection, items: list[Any]) -> Answer:
        """Run a batch's requests in turn, letting other connections in between, and answer
        them in one array of at most about MAX_ANSWER_BYTES: once the answer reached it, the
        rest are not run and each gets ANSWER_TOO_LARGE."""
        parts: list[bytes] = []
        afters: list[Callable[[], None]] = []
        size = 0
        try:
            for index, item in enumerate(items):
                if size >= MAX_ANSWER_BYTES:
                    self.errors += 1
                    message = error_message(
                        request_id(item),
                        ANSWER_TOO_LARGE,
                        f"not run: the batch's answer reached {size} bytes before request "
                        f"{index} (at most {MAX_ANSWER_BYTES}); send it in another batch",
                    )
                    parts.append(encode(message, conn.log, line=False))
                    continue
                outcome = await self._dispatch(conn, item)
                if outcome.after is not None:
                    afters.append(outcome.after)
                parts.append(encode(outcome.message, conn.log, line=False))
                size += len(parts[-1])
                conn.hold_answer(size)
                # Let the other connections have a turn between a batch's requests; stop if
                # the client left meanwhile.
                await anyio.lowlevel.checkpoint()
                if conn.peer_closed():
                    conn.close("peer_gone")
                    break
        except BaseException:
            # What earlier requests asked for still happens (as after a failed send).
            for after in afters:
                after()
            raise
        return Answer(b"[" + b",".join(parts) + b"]\n", afters)

    async def _dispatch(self, conn: Connection, obj: Any) -> Outcome:
        started = time.perf_counter()
        conn.count_request()
        self.requests += 1
        req_id = request_id(obj)
        raw_method = obj.get("method") if isinstance(obj, dict) else None
        method = raw_method[:100] if isinstance(raw_method, str) else None
        try:
            request = parse_request(obj)
            params = validate_params(request.method, request.params)
            context = Context(self.daemon, conn, self.control_stats)
            reply = await METHODS[request.method].handler(context, params)
        except ProtocolError as err:
            return self.rejected(conn, started, req_id, method, err)
        except DaemonError as err:
            code = DAEMON_BUSY if isinstance(err, StateError) else INTERNAL_ERROR
            return self.rejected(conn, started, req_id, method, ProtocolError(code, str(err)))
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
            self.log_line(conn, "info", "request_handled", **fields, **(reply.log or {}))
        return Outcome(result_message(request.id, reply.result), reply.after)

    def oversized(self, conn: Connection, message: str) -> None:
        """Count and log a request line over the limit (its connection is then closed)."""
        self.errors += 1
        self.log_line(
            conn, "warning", "request_rejected", method=None, code=REQUEST_TOO_LARGE, error=message
        )

    def rejected(
        self,
        conn: Connection,
        started: float,
        req_id: str | int | None,
        method: str | None,
        err: ProtocolError,
    ) -> Outcome:
        self.errors += 1
        self.log_line(
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
