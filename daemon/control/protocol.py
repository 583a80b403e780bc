"""The control protocol: JSON-RPC 2.0, one JSON object (or batch array) per line.

A request is `{"jsonrpc": "2.0", "id": 1, "method": "cache.get", "params": {...}}` with named
params; every request gets exactly one answer, so it needs an `id` (a string or an integer).
Notifications *to* the server are not accepted: a request without an id is answered with an
"invalid request" error instead of being dropped silently. The server sends notifications to a
subscribed connection: `{"jsonrpc": "2.0", "method": "event", "params": {<event>}}`, and a last
`{"jsonrpc": "2.0", "method": "subscription_dropped", "params": {"reason": ...}}` when it cuts
off a subscriber that does not keep up. Every event carries `seq` and `cursor` (an opaque
position; see daemon/journal/feed.py): a cursor that is not one of ours, or one ahead of the
journal, is an invalid-params error; one of another database or older than the journal keeps is
answered with `resync: true` instead.

Error codes (the connection stays usable unless noted):

    -32700  parse error: the line is not JSON (or not UTF-8)
    -32600  invalid request: not an object, or a missing/invalid jsonrpc, method or id
    -32601  method not found
    -32602  invalid params: the message names the param and says why
    -32603  internal error: a bug in the daemon; it is logged with its traceback
    -32001  daemon busy: still starting or already stopping; retry shortly
    -32002  flush failed: the state did not reach the disk (the message says why); the
            daemon keeps it in memory and retries by itself
    -32003  scan failed: the library could not be read (the message says why)
    -32004  request too large: a line over MAX_LINE_BYTES; the connection is then closed
    -32005  too many connections: the connection is then closed
    -32006  peer refused: the peer runs as another user; the connection is then closed
    -32007  already subscribed: one subscription per connection
    -32008  answer too large: the answer would be over MAX_ANSWER_BYTES; the message says how
            to ask for less (fewer keys, a smaller batch)
    -32009  batch too large: a batch of more than MAX_BATCH_ITEMS requests (one error for the
            whole batch, none of it is run)

Bounds (README, "What the socket guarantees"): a request line of at most MAX_LINE_BYTES; a
batch of at most MAX_BATCH_ITEMS requests; an answer (a whole batch's together) of at most
about MAX_ANSWER_BYTES: `tracks.list` and `changes.since` end a page early (`next`, `more`),
`cache.get_many` is refused with -32008, and the items of a batch after the answer reached the
bound are not run and get -32008 each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ValidationError

JSONRPC: Final = "2.0"
# One request line may be at most this long; longer input is refused and the connection closed.
MAX_LINE_BYTES: Final = 1024 * 1024
# A batch of more requests than this is refused whole, with one error.
MAX_BATCH_ITEMS: Final = 100
# An answer grows to about this size at most (see the bounds above).
MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
DAEMON_BUSY: Final = -32001
FLUSH_FAILED: Final = -32002
SCAN_FAILED: Final = -32003
REQUEST_TOO_LARGE: Final = -32004
TOO_MANY_CONNECTIONS: Final = -32005
PEER_REFUSED: Final = -32006
ALREADY_SUBSCRIBED: Final = -32007
ANSWER_TOO_LARGE: Final = -32008
BATCH_TOO_LARGE: Final = -32009


class ProtocolError(Exception):
    """A request that gets a JSON-RPC error object instead of a result."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


# -- requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    id: str | int
    method: str
    params: dict[str, Any]


_MEMBERS: Final = frozenset({"jsonrpc", "id", "method", "params"})
_JSON_TYPES: Final = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """'an object', 'a string', … for messages about what was sent."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def valid_id(value: Any) -> bool:
    return type(value) is str or type(value) is int


def request_id(obj: Any) -> str | int | None:
    """The id to answer an invalid request with: its own when usable, else null."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if valid_id(value):
            return value
    return None


def parse_request(obj: Any) -> Request:
    """Check the JSON-RPC envelope of one decoded request; raise ProtocolError if it is bad."""
    if not isinstance(obj, dict):
        raise ProtocolError(
            INVALID_REQUEST, f"invalid request: must be a JSON object, not {json_type(obj)}"
        )
    if obj.get("jsonrpc") != JSONRPC:
        raise ProtocolError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
    method = obj.get("method")
    if type(method) is not str or not method:
        shown = "missing" if method is None else f"{json_type(method)}, not a method name"
        raise ProtocolError(INVALID_REQUEST, f'invalid request: "method" is {shown}')
    if "id" not in obj:
        raise ProtocolError(
            INVALID_REQUEST,
            'invalid request: "id" is missing; every request is answered, so give it an id '
            "(notifications are not accepted)",
        )
    if not valid_id(obj["id"]):
        raise ProtocolError(
            INVALID_REQUEST,
            f'invalid request: "id" must be a string or an integer, not {json_type(obj["id"])}',
        )
    unknown = sorted(set(obj) - _MEMBERS)
    if unknown:
        raise ProtocolError(
            INVALID_REQUEST,
            f"invalid request: unknown member {unknown[0]!r}; a request has only jsonrpc, id, "
            "method and params",
        )
    params = obj.get("params")
    if params is None:
        params = {}
    elif isinstance(params, list):
        raise ProtocolError(
            INVALID_PARAMS, f"{method}: params must be an object of named params, not an array"
        )
    elif not isinstance(params, dict):
        raise ProtocolError(
            INVALID_REQUEST, f'invalid request: "params" must be an object, not {json_type(params)}'
        )
    return Request(obj["id"], method, params)


def describe_params_error(method: str, model: type[BaseModel], err: ValidationError) -> str:
    """'cache.put: param 'success' must be a boolean (got 'yes')' and the like, one line."""
    expected = ", ".join(model.model_fields) or "none"
    parts: list[str] = []
    for problem in err.errors()[:3]:
        loc = ".".join(str(p) for p in problem["loc"])
        kind = problem["type"]
        if not loc:
            parts.append(problem["msg"].removeprefix("Value error, "))
        elif kind == "extra_forbidden":
            parts.append(f"unknown param {loc!r} (expected: {expected})")
        elif kind == "missing":
            parts.append(f"missing param {loc!r}")
        else:
            given = problem.get("input")
            shown = repr(given) if len(repr(given)) <= 60 else repr(given)[:57] + "..."
            msg = problem["msg"].removeprefix("Value error, ")
            parts.append(f"param {loc!r} is invalid: {msg} (got {shown})")
    more = len(err.errors()) - len(parts)
    tail = f"; and {more} more" if more > 0 else ""
    return f"{method}: {'; '.join(parts)}{tail}"


# -- responses ------------------------------------------------------------------------------


def result_message(req_id: str | int, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": req_id, "result": result}


def error_message(
    req_id: str | int | None, code: int, message: str, data: Any = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": JSONRPC, "id": req_id, "error": error}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "method": method, "params": params}
