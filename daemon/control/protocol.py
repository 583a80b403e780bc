"""The control protocol: JSON-RPC 2.0, one JSON object (or batch array) per line.

A request is `{"jsonrpc": "2.0", "id": 1, "method": "cache.get", "params": {...}}` with named
params; every request gets exactly one answer, so it needs an `id` (a string or an integer).
Notifications *to* the server are not accepted: a request without an id is answered with an
"invalid request" error instead of being dropped silently. The server sends notifications to a
subscribed connection: `{"jsonrpc": "2.0", "method": "event", "params": {<event>}}`, and a last
`{"jsonrpc": "2.0", "method": "subscription_dropped", "params": {"reason": ...}}` when it cuts
off a subscriber that does not keep up. Every event carries `seq` and `cursor` (an opaque
position; see daemon/feed.py): a cursor that is not one of ours, or one ahead of the journal, is
an invalid-params error; one of another database or older than the journal keeps is answered
with `resync: true` instead.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from daemon.events import EventType
from daemon.models import TRACK_FIELDS

JSONRPC: Final = "2.0"
# One request line may be at most this long; longer input is refused and the connection closed.
MAX_LINE_BYTES: Final = 1024 * 1024

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


class ProtocolError(Exception):
    """A request that gets a JSON-RPC error object instead of a result."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


# -- params ---------------------------------------------------------------------------------


class Params(BaseModel):
    """Base of every method's params: unknown params and loose types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _normalise_id(value: str) -> str:
    # Persistent ids are hex, upper case in the snapshot; fallback ids ("~" + hex) lower case.
    value = value.strip()
    return value.lower() if value.startswith("~") else value.upper()


Name = Annotated[str, Field(max_length=4096)]
# What a cache entry is stored under: an empty artist or album would be a key nothing finds.
StoredName = Annotated[str, Field(max_length=4096), AfterValidator(_not_blank)]
Source = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
PersistentId = Annotated[
    str,
    Field(min_length=1, max_length=64),
    AfterValidator(_not_blank),
    AfterValidator(_normalise_id),
]


class NoParams(Params):
    pass


class RescanParams(Params):
    accept_removals: bool = False


class TrackParams(Params):
    persistent_id: PersistentId


class AlbumParams(Params):
    artist: Name
    album: Name


class CacheKeyParams(AlbumParams):
    source: Source


# An answer may be given its own lifetime (a "no year found" that should be asked again).
TtlSeconds = Annotated[float, Field(gt=0, le=100 * 365 * 86400.0)]


class CachePutParams(CacheKeyParams):
    artist: StoredName
    album: StoredName
    success: bool
    data: Any = None
    metadata: dict[str, Any] | None = None
    ttl_seconds: TtlSeconds | None = None


class SubscribeParams(Params):
    # None: every event type. An empty list would subscribe to nothing, which is a mistake.
    types: Annotated[list[EventType], Field(min_length=1)] | None = None
    # Replay the journal after this position first, then go on live (see changes.since).
    since: Annotated[str, Field(min_length=1, max_length=200)] | None = None


# -- for programs: changes since a position, named cursors, paging, batches -------------------


def _consumer_name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    if value.casefold().startswith("musicd."):
        raise ValueError("names starting with 'musicd.' are reserved for the daemon's own")
    return value


def _track_fields(value: list[str]) -> list[str]:
    unknown = [name for name in value if name not in TRACK_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (known: {', '.join(TRACK_FIELDS)})")
    return value


ConsumerName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_consumer_name)]
Cursor = Annotated[str, Field(min_length=1, max_length=200)]
PageLimit = Annotated[int, Field(ge=1, le=10000)]
MAX_BATCH: Final = 1000


class ChangesSinceParams(Params):
    cursor: Cursor | None = None
    consumer: ConsumerName | None = None
    limit: PageLimit = 1000
    types: Annotated[list[EventType], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_position(self) -> ChangesSinceParams:
        if self.cursor is not None and self.consumer is not None:
            raise ValueError("give either cursor or consumer, not both")
        return self


class CursorGetParams(Params):
    consumer: ConsumerName


class CursorCommitParams(Params):
    consumer: ConsumerName
    cursor: Cursor
    force: bool = False


class TracksListParams(Params):
    after: PersistentId | None = None
    limit: PageLimit = 1000
    fields: Annotated[list[str], Field(min_length=1), AfterValidator(_track_fields)] | None = None


class CacheGetManyParams(Params):
    keys: Annotated[list[CacheKeyParams], Field(max_length=MAX_BATCH)]


class CachePutManyParams(Params):
    # Each entry is checked on its own (CachePutParams), so the answer can name every bad one.
    entries: Annotated[list[Any], Field(max_length=MAX_BATCH)]


FEED_PARAMS: Final[dict[str, type[Params]]] = {
    "changes.since": ChangesSinceParams,
    "cursor.get": CursorGetParams,
    "cursor.commit": CursorCommitParams,
    "tracks.list": TracksListParams,
    "cache.get_many": CacheGetManyParams,
    "cache.put_many": CachePutManyParams,
    "cache.cleanup": NoParams,
}


METHOD_PARAMS: Final[dict[str, type[Params]]] = {
    "ping": NoParams,
    "status": NoParams,
    "stats": NoParams,
    "flush": NoParams,
    "rescan": RescanParams,
    "tracks.get": TrackParams,
    "tracks.album": AlbumParams,
    "cache.get": CacheKeyParams,
    "cache.put": CachePutParams,
    "cache.invalidate": AlbumParams,
    "cache.clear": NoParams,
    "subscribe": SubscribeParams,
    **FEED_PARAMS,
    "shutdown": NoParams,
}


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


def validate_params(method: str, params: dict[str, Any]) -> Params:
    """The method's params model; ProtocolError for an unknown method or bad params."""
    model = METHOD_PARAMS.get(method)
    if model is None:
        raise ProtocolError(
            METHOD_NOT_FOUND,
            f"unknown method {method!r}; known methods: {', '.join(METHOD_PARAMS)}",
        )
    try:
        return model.model_validate(params)
    except ValidationError as err:
        raise ProtocolError(INVALID_PARAMS, describe_params_error(method, model, err)) from None


def describe_params_error(method: str, model: type[Params], err: ValidationError) -> str:
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
