"""The JSON-RPC envelope and params checks: every refusal says what was wrong."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import pytest

from daemon.control import methods, program_methods, subscriptions
from daemon.control.params import CachePutParams, SubscribeParams
from daemon.control.protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    ProtocolError,
    parse_request,
)
from daemon.control.spec import _ROWS, CHEAP_METHODS, METHODS, _table, validate_params


def rejection(obj: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        request = parse_request(obj)
        validate_params(request.method, request.params)
    return caught.value


@pytest.mark.parametrize(
    ("obj", "code", "says"),
    [
        ([1], INVALID_REQUEST, "must be a JSON object, not an array"),
        (42, INVALID_REQUEST, "not a number"),
        ("ping", INVALID_REQUEST, "not a string"),
        ({"id": 1, "method": "ping"}, INVALID_REQUEST, '"jsonrpc" must be "2.0"'),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, INVALID_REQUEST, '"2.0"'),
        ({"jsonrpc": "2.0", "id": 1}, INVALID_REQUEST, '"method" is missing'),
        ({"jsonrpc": "2.0", "id": 1, "method": 7}, INVALID_REQUEST, '"method" is a number'),
        ({"jsonrpc": "2.0", "method": "ping"}, INVALID_REQUEST, '"id" is missing'),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, INVALID_REQUEST, "not null"),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, INVALID_REQUEST, "not a boolean"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, INVALID_REQUEST, "not a number"),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "ping", "parms": {}},
            INVALID_REQUEST,
            "unknown member 'parms'",
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": 3},
            INVALID_REQUEST,
            '"params" must be an object',
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "tracks.get", "params": ["X"]},
            INVALID_PARAMS,
            "named params, not an array",
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "nope"},
            METHOD_NOT_FOUND,
            "unknown method 'nope'; known methods: ping",
        ),
    ],
)
def test_bad_envelope_is_refused_with_a_reason(obj: Any, code: int, says: str) -> None:
    err = rejection(obj)
    assert err.code == code
    assert says in err.message


@pytest.mark.parametrize(
    ("method", "params", "says"),
    [
        ("ping", {"x": 1}, "ping: unknown param 'x' (expected: none)"),
        ("cache.get", {"artist": "a", "album": "b"}, "cache.get: missing param 'source'"),
        (
            "cache.get",
            {"artist": "a", "album": "b", "source": " "},
            "param 'source' is invalid: must not be blank",
        ),
        (
            "cache.put",
            {"artist": "a", "album": "b", "source": "mb", "success": "yes"},
            "param 'success' is invalid: Input should be a valid boolean (got 'yes')",
        ),
        (
            "cache.put",
            {"artist": 1, "album": "b", "source": "mb", "success": True},
            "param 'artist' is invalid: Input should be a valid string (got 1)",
        ),
        (
            "cache.put",
            {"artist": "a", "album": "b", "source": "mb", "success": True, "metadata": [1]},
            "param 'metadata' is invalid",
        ),
        ("rescan", {"accept_removals": 1}, "param 'accept_removals' is invalid"),
        ("subscribe", {"types": ["track_renamed"]}, "param 'types.0' is invalid"),
        ("subscribe", {"types": []}, "param 'types' is invalid"),
        ("tracks.get", {"persistent_id": ""}, "param 'persistent_id' is invalid"),
    ],
)
def test_bad_params_name_the_param_and_why(method: str, params: dict[str, Any], says: str) -> None:
    err = rejection({"jsonrpc": "2.0", "id": "a", "method": method, "params": params})
    assert err.code == INVALID_PARAMS
    assert says in err.message


def test_valid_requests_parse_into_their_models() -> None:
    request = parse_request(
        {
            "jsonrpc": "2.0",
            "id": "x-1",
            "method": "cache.put",
            "params": {
                "artist": "Björk",
                "album": "Homogenic",
                "source": "discogs",
                "success": False,
                "data": [1, {"a": None}],
                "metadata": {"status": 503},
            },
        }
    )
    params = validate_params(request.method, request.params)
    assert isinstance(params, CachePutParams)
    assert (params.success, params.data, params.metadata) == (
        False,
        [1, {"a": None}],
        {"status": 503},
    )
    sub = validate_params("subscribe", {"types": ["track_modified"]})
    assert isinstance(sub, SubscribeParams) and sub.types == ["track_modified"]
    assert validate_params("subscribe", {}) == SubscribeParams(types=None)


@pytest.mark.parametrize(
    ("given", "looked_up"),
    [
        ("0123456789abcdef", "0123456789ABCDEF"),
        (" 0123456789ABCDEF ", "0123456789ABCDEF"),
        ("~0a1b2c3d4e5f6a7", "~0a1b2c3d4e5f6a7"),  # fallback ids are lower-case hex
        ("~0A1B2C3D4E5F6A7", "~0a1b2c3d4e5f6a7"),
    ],
)
def test_persistent_ids_are_found_in_any_case(given: str, looked_up: str) -> None:
    params = validate_params("tracks.get", {"persistent_id": given})
    assert params.persistent_id == looked_up  # type: ignore[attr-defined]


@pytest.mark.parametrize("blank", ["artist", "album"])
def test_cache_put_refuses_a_blank_artist_or_album(blank: str) -> None:
    params = {"artist": "Miles Davis", "album": "Kind of Blue", "source": "discogs"}
    params[blank] = "  "
    err = rejection(
        {"jsonrpc": "2.0", "id": 1, "method": "cache.put", "params": {**params, "success": True}}
    )
    assert err.code == INVALID_PARAMS
    assert f"param '{blank}' is invalid: must not be blank" in err.message
    # Reading with a blank name is harmless: it finds nothing.
    validate_params("cache.get", params)


def test_the_cheap_methods_are_the_reads_and_cache_put() -> None:
    assert CHEAP_METHODS == {
        "ping",
        "status",
        "stats",
        "cache.get",
        "cache.get_many",
        "cache.put",
        "tracks.get",
        "tracks.album",
        "tracks.list",
        "changes.since",
        "cursor.get",
        "triggers.list",
    }


def test_every_handler_says_what_it_answers() -> None:
    for spec in METHODS.values():
        assert (spec.handler.__doc__ or "").startswith("Answers "), spec.name


def handlers_in(module: ModuleType) -> dict[str, Any]:
    """The module's handlers: its own public coroutine functions."""
    return {
        name: fn
        for name, fn in vars(module).items()
        if inspect.iscoroutinefunction(fn)
        and fn.__module__ == module.__name__
        and not name.startswith("_")
    }


def test_every_handler_is_named_in_the_table_under_its_method_name() -> None:
    written = {}
    for module in (methods, program_methods, subscriptions):
        written.update(handlers_in(module))
    written.pop("forward_events")  # the task `subscribe` starts, not a handler
    named = {spec.name.replace(".", "_"): spec.handler for spec in METHODS.values()}
    assert written == named


def test_a_method_named_in_two_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="more than one row"):
        _table((*_ROWS, _ROWS[0]))
