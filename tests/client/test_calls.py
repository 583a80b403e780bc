"""Both clients' typed methods against the control table: every method of
daemon/control/spec.py has a method on both clients with the same parameters, so a method added
to, renamed in or removed from the table without its client methods (or the other way round)
fails here, and so does a typed method whose params the daemon would refuse."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from daemon.client import AsyncMusicdClient, MusicdClient
from daemon.control.spec import METHODS, validate_params
from daemon.errors import NotRunning

# Parameters a client method has that are not params of its request.
TRANSPORT_ONLY = {"subscribe": {"event_timeout"}}
# A valid value for every param any method takes.
SAMPLES: dict[str, Any] = {
    "accept_removals": True,
    "persistent_id": "ABC123",
    "artist": "Miles Davis",
    "album": "Kind of Blue",
    "source": "musicbrainz",
    "success": True,
    "data": {"year": 1959},
    "metadata": {"via": "test"},
    "ttl_seconds": 60.0,
    "types": ["track_added"],
    "since": "epoch.0",
    "cursor": "epoch.1",
    "consumer": "year-updater",
    "name": "genre-updater",
    "limit": 10,
    "force": True,
    "after": "ABC123",
    "fields": ["name"],
    "keys": [("Miles Davis", "Kind of Blue", "musicbrainz")],
    "albums": [("Miles Davis", "Kind of Blue")],
    "entries": [{"artist": "a", "album": "b", "source": "s", "success": True}],
    "origin": "genre-updater",
    "tracks": [{"track_id": 7, "fields": {"genre": "Jazz", "year": 1959}}],
}
# Enough of every result for the typed methods to convert it and page on.
RESULT = {"removed": 0, "resync": False, "more": False, "next": None, "expected": 1}
CLIENT_NAMES = {spec.client_method for spec in METHODS.values()}
# The client methods that return an iterator of a stream's notifications.
STREAMS = {spec.client_method for spec in METHODS.values() if spec.streams}


def parameters(method: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(method).parameters) - {"self"}


def typed_methods(client: type) -> list[str]:
    own = {name for name in vars(client) if not name.startswith("_")}
    return sorted(own - {"call", "connect", "close", "aclose", "wait_closed", "subscription"})


@pytest.mark.parametrize("client", [MusicdClient, AsyncMusicdClient])
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_a_typed_method_with_its_params(client: type, name: str) -> None:
    spec = METHODS[name]
    method = getattr(client, spec.client_method, None)
    assert method is not None, f"{client.__name__} has no {spec.client_method} for {name}"
    fields = set(spec.params.model_fields)
    assert parameters(method) - TRANSPORT_ONLY.get(spec.client_method, set()) == fields


def test_both_clients_offer_the_same_typed_methods() -> None:
    assert typed_methods(MusicdClient) == typed_methods(AsyncMusicdClient)
    for name in typed_methods(MusicdClient):
        sync, other = getattr(MusicdClient, name), getattr(AsyncMusicdClient, name)
        assert inspect.signature(sync).parameters == inspect.signature(other).parameters, name


class Recording(MusicdClient):
    def __init__(self) -> None:
        super().__init__("/nonexistent.sock")
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def call(self, method: str, /, **params: Any) -> Any:
        self.sent.append((method, params))
        return RESULT


class AsyncRecording(AsyncMusicdClient):
    def __init__(self) -> None:
        super().__init__("/nonexistent.sock")
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, /, **params: Any) -> Any:
        self.sent.append((method, params))
        return RESULT


def arguments(method: Callable[..., Any]) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in inspect.signature(method).parameters.values():
        if param.name == "self" or param.name in TRANSPORT_ONLY.get(method.__name__, set()):
            continue
        # A param without a sample (one of several ids a request takes only one of) is left
        # at its default: not sent.
        value = SAMPLES.get(param.name, param.default)
        if param.kind is param.KEYWORD_ONLY:
            kwargs[param.name] = value
        else:
            args.append(value)
    return args, kwargs


def check_sent(sent: list[tuple[str, dict[str, Any]]], name: str) -> None:
    assert sent, f"{name} sent nothing"
    for method, params in sent:
        assert method in METHODS, f"{name} calls {method!r}, which is not in the table"
        validate_params(method, params)  # the daemon would take what the client sends


@pytest.mark.parametrize("name", typed_methods(MusicdClient))
def test_each_blocking_typed_method_sends_a_request_the_daemon_takes(name: str) -> None:
    client = Recording()
    method = getattr(client, name)
    args, kwargs = arguments(method)
    if name in STREAMS:
        with pytest.raises(NotRunning):  # the request was recorded; reading finds no daemon
            next(method(*args, **kwargs))
    elif name.startswith("iter_"):
        assert list(method(*args, **kwargs)) == [RESULT]
    else:
        method(*args, **kwargs)
    check_sent(client.sent, name)
    if name in CLIENT_NAMES:
        assert {m for m, _ in client.sent} == {
            s.name for s in METHODS.values() if s.client_method == name
        }


@pytest.mark.parametrize("name", typed_methods(AsyncMusicdClient))
async def test_each_async_typed_method_sends_a_request_the_daemon_takes(name: str) -> None:
    client = AsyncRecording()
    method = getattr(client, name)
    args, kwargs = arguments(method)
    if name in STREAMS:
        with pytest.raises(NotRunning):  # the request was recorded; reading finds no daemon
            await method(*args, **kwargs).__anext__()
    elif name.startswith("iter_"):
        assert [page async for page in method(*args, **kwargs)] == [RESULT]
    else:
        await method(*args, **kwargs)
    check_sent(client.sent, name)


def test_async_calls_are_coroutine_functions_as_inspect_sees_them() -> None:
    for name in typed_methods(AsyncMusicdClient):
        method = getattr(AsyncMusicdClient, name)
        if name in STREAMS or name.startswith("iter_"):
            continue  # these return an async iterator
        assert inspect.iscoroutinefunction(method), name
