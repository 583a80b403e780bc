"""The client library against the in-process server: both clients, errors a program can handle."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.client import AsyncMusicdClient, ClientTimeout, MusicdClient
from daemon.control.protocol import INVALID_PARAMS
from daemon.control.spec import METHODS
from daemon.errors import NotRunning, RemoteError
from daemon.events import ObserverEvent
from tests.control.local_server import LocalServer
from tests.support import short_tempdir, wait_for


@pytest.fixture
def nowhere() -> Iterator[Path]:
    root = short_tempdir()
    yield root / "musicd.sock"
    shutil.rmtree(root, ignore_errors=True)


def stale_socket(path: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()


@pytest.mark.parametrize("stale", [False, True], ids=["missing", "stale"])
def test_sync_client_says_not_running_and_how_to_start(nowhere: Path, stale: bool) -> None:
    if stale:
        stale_socket(nowhere)
    with pytest.raises(NotRunning, match=r"not running .*'musicd run' or 'musicd launchd install'"):
        MusicdClient(nowhere).ping()


@pytest.mark.parametrize("stale", [False, True], ids=["missing", "stale"])
async def test_async_client_says_not_running(nowhere: Path, stale: bool) -> None:
    if stale:
        stale_socket(nowhere)
    with pytest.raises(NotRunning):
        async with AsyncMusicdClient(nowhere) as client:
            await client.ping()


def test_refused_request_raises_remote_error_with_the_code(local: LocalServer) -> None:
    with local.client() as client:
        with pytest.raises(RemoteError, match="param 'source' is invalid") as caught:
            client.cache_put("a", "b", "", data=1)
        assert caught.value.rpc_code == INVALID_PARAMS
        assert client.ping()["pong"] is True  # the same client goes on


def test_subscribe_with_an_event_timeout_raises_when_nothing_happens(local: LocalServer) -> None:
    with local.client() as client, pytest.raises(ClientTimeout, match=r"within 0\.2 s"):
        next(client.subscribe(event_timeout=0.2))


def test_client_reconnects_on_demand_and_call_takes_raw_params(local: LocalServer) -> None:
    client = local.client()
    assert client.call("cache.get", artist="a", album="b", source="c") is None
    client.close()
    assert client.call("ping")["pong"] is True
    client.close()


async def test_async_client_round_trips_and_subscribes(local: LocalServer) -> None:
    received: list[dict[str, Any]] = []
    async with AsyncMusicdClient(local.socket) as client:
        assert (await client.ping())["pong"] is True
        assert (await client.status())["library"]["track_count"] == 39
        await client.cache_put("Nina Simone", "Wild Is the Wind", "discogs", data={"id": 1})
        entry = await client.cache_get("nina simone", "wild is the wind", "Discogs")
        assert entry is not None and entry["data"] == {"id": 1}
        assert (await client.stats())["cache"]["total_entries"] == 1
        assert len(await client.album_tracks("Nina Simone", "Wild Is the Wind")) > 0
        assert await client.track("nope") is None
        assert await client.invalidate("Nina Simone", "Wild Is the Wind") == 1
        assert await client.cache_clear() == 0
        with pytest.raises(RemoteError, match="still starting"):
            await client.rescan()

    async def collect() -> None:
        async with AsyncMusicdClient(local.socket) as subscriber:
            async for event in subscriber.subscribe(["flush_finished"], event_timeout=10):
                received.append(event)
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await anyio.to_thread.run_sync(
            lambda: wait_for(lambda: local.daemon.hub.subscriber_count, what="the subscription")
        )
        events = [ObserverEvent("scan_started", seq=1), ObserverEvent("flush_finished", seq=2)]
        await anyio.to_thread.run_sync(local.call, local.daemon.hub.deliver, events)
    assert [(e["type"], e["seq"]) for e in received] == [("flush_finished", 2)]


def named_keys(handler: Callable[..., Any]) -> set[str] | None:
    """The keys a handler's docstring names when it answers `{a, b, ...}`, else None."""
    doc = handler.__doc__ or ""
    if not doc.startswith("Answers {"):
        return None
    return {key.strip() for key in doc[len("Answers {") : doc.index("}")].split(",")}


def test_results_have_the_keys_their_handlers_name(local: LocalServer) -> None:
    consumer = "shape-check"
    params: dict[str, dict[str, Any]] = {
        "cache.invalidate": {"artist": "a", "album": "b"},
        "cache.invalidate_many": {"albums": [{"artist": "a", "album": "b"}]},
        "changes.since": {"consumer": consumer},
        "cursor.get": {"consumer": consumer},
        "tracks.list": {"limit": 1},
        "cache.put_many": {
            "entries": [{"artist": "a", "album": "b", "source": "discogs", "success": True}]
        },
        "writes.expect": {
            "origin": "shape-check",
            "tracks": [{"persistent_id": "ABC", "fields": {"genre": "Jazz"}}],
        },
    }
    # Refused while starting, a stream, stops it, needs a trigger (the local daemon has none).
    skipped = {"rescan", "subscribe", "shutdown", "triggers.run"}
    checked = []
    with local.client() as client:
        cursor = client.changes_since(consumer=consumer)["cursor"]
        params["cursor.commit"] = {"consumer": consumer, "cursor": cursor}
        for name, spec in METHODS.items():
            keys = named_keys(spec.handler)
            if keys is None or name in skipped:
                continue
            result = client.call(name, **params.get(name, {}))
            assert keys <= set(result), (name, sorted(result))
            checked.append(name)
    assert len(checked) >= 10
