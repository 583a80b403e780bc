"""The control server in-process: bad input, misbehaving clients, limits, isolation, security.

Every refusal must leave the server answering everyone else, so most tests end by checking
that a second client is still served.
"""

from __future__ import annotations

import itertools
import os
import socket
import sqlite3
import stat
import threading
import warnings
from dataclasses import replace
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.control.methods import Context, Reply
from daemon.control.protocol import (
    ALREADY_SUBSCRIBED,
    DAEMON_BUSY,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_LINE_BYTES,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PEER_REFUSED,
    REQUEST_TOO_LARGE,
    TOO_MANY_CONNECTIONS,
)
from daemon.control.server import Limits
from daemon.control.spec import METHODS
from daemon.events import ObserverEvent, TrackModified
from daemon.models import Track
from tests.control.local_server import LocalServer, local_server
from tests.support import wait_for


def still_served(local: LocalServer) -> None:
    with local.client() as other:
        assert other.ping()["pong"] is True


def error_of(message: dict[str, Any]) -> tuple[int, str]:
    return message["error"]["code"], message["error"]["message"]


@pytest.mark.parametrize(
    ("line", "code", "says"),
    [
        (b"{not json", PARSE_ERROR, "parse error: unexpected character"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping"', PARSE_ERROR, "parse error"),
        (b"\xff\xfe", PARSE_ERROR, "parse error"),
        (b"42", INVALID_REQUEST, "must be a JSON object, not a number"),
        (b'"ping"', INVALID_REQUEST, "not a string"),
        (b"[]", INVALID_REQUEST, "an empty batch"),
        (b'{"id": 1, "method": "ping"}', INVALID_REQUEST, '"jsonrpc" must be "2.0"'),
        (b'{"jsonrpc": "2.0", "id": 1}', INVALID_REQUEST, '"method" is missing'),
        (b'{"jsonrpc": "2.0", "method": "ping"}', INVALID_REQUEST, '"id" is missing'),
        (b'{"jsonrpc": "2.0", "id": [1], "method": "ping"}', INVALID_REQUEST, '"id" must be'),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "cache.nuke"}',
            METHOD_NOT_FOUND,
            "unknown method 'cache.nuke'",
        ),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "cache.get", "params": {"artist": "a"}}',
            INVALID_PARAMS,
            "cache.get: missing param 'album'",
        ),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "tracks.get", "params": {"pid": "A"}}',
            INVALID_PARAMS,
            "unknown param 'pid' (expected: persistent_id, track_id, music_id, database_id)",
        ),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "cache.put", "params": {"artist": "a", '
            b'"album": "b", "source": "  ", "success": true}}',
            INVALID_PARAMS,
            "must not be blank",
        ),
    ],
)
def test_bad_input_gets_its_error_and_the_connection_stays_usable(
    local: LocalServer, line: bytes, code: int, says: str
) -> None:
    conn = local.raw()
    with capture_logs() as logs:
        answer = conn.exchange(line)
    assert error_of(answer)[0] == code
    assert says in error_of(answer)[1]
    assert answer["id"] in (1, None)
    assert [e for e in logs if e["event"] == "request_rejected" and e["code"] == code]
    assert conn.request("ping")["result"]["pong"] is True
    still_served(local)


def test_batch_is_answered_in_one_array_in_order(local: LocalServer) -> None:
    conn = local.raw()
    answer = conn.exchange(
        b'[{"jsonrpc": "2.0", "id": "a", "method": "ping"}, 7,'
        b' {"jsonrpc": "2.0", "id": "b", "method": "cache.get",'
        b' "params": {"artist": "x", "album": "y", "source": "z"}}]'
    )
    assert [m["id"] for m in answer] == ["a", None, "b"]
    assert answer[0]["result"]["pong"] is True
    assert answer[1]["error"]["code"] == INVALID_REQUEST
    assert answer[2]["result"] is None


def test_line_over_1_mib_gets_an_error_and_the_connection_is_closed(local: LocalServer) -> None:
    conn = local.raw()
    conn.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "')
    conn.send(b"x" * MAX_LINE_BYTES)
    code, message = error_of(conn.read())
    assert code == REQUEST_TOO_LARGE
    assert f"at most {MAX_LINE_BYTES} bytes" in message
    assert conn.closed_by_server()
    still_served(local)


def test_line_just_under_the_limit_is_served(local: LocalServer) -> None:
    conn = local.raw()
    head = b'{"jsonrpc": "2.0", "id": 1, "method": "cache.put", "params": {"artist": "a", '
    head += b'"album": "b", "source": "lastfm", "success": true, "data": "'
    tail = b'"}}'
    pad = b"x" * (MAX_LINE_BYTES - len(head) - len(tail) - 1)
    answer = conn.exchange(head + pad + tail)
    assert len(answer["result"]["data"]) == len(pad)


def test_client_that_stops_reading_is_cut_off_and_blocks_nobody() -> None:
    with local_server(Limits(send_timeout_seconds=0.5)) as local, capture_logs() as logs:
        greedy = local.raw()
        # Thousands of requests whose answers it never reads: the server's writes back up.
        request = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}) + b"\n"
        greedy.send(request * 3000)
        still_served(local)
        wait_for(
            lambda: any(
                e.get("reason") == "send_timeout"
                for e in logs
                if e["event"] == "client_disconnected"
            ),
            what="the non-reading client to be disconnected",
        )
        assert greedy.closed_by_server()
        still_served(local)


def test_slow_subscriber_is_told_and_disconnected_without_blocking_others() -> None:
    with local_server(control={"max_subscriber_queue": 8}) as local:
        hub = local.daemon.hub
        slow = local.raw()
        assert slow.request("subscribe")["result"]["subscribed"] is True
        published = 0

        def publish_more() -> bool:
            nonlocal published
            events = [
                ObserverEvent("scan_finished", {"pad": "x" * 4000}, seq=published + i)
                for i in range(1, 5)
            ]
            published += len(events)
            local.call(hub.deliver, events)
            return hub.subscriber_count == 0

        wait_for(publish_more, timeout=20, what="the slow subscriber to be cut off")
        still_served(local)
        messages: list[dict[str, Any]] = []
        while True:
            try:
                messages.append(slow.read())
            except EOFError:
                break
        *events, last = messages
        assert last["method"] == "subscription_dropped"
        assert last["params"]["reason"].startswith("queue_full")
        seqs = [m["params"]["seq"] for m in events]
        assert seqs == list(range(1, len(seqs) + 1))  # in order, none skipped before the drop
        assert last["params"]["last_seq"] == seqs[-1]
        assert len(seqs) < published
        still_served(local)


def test_idle_connection_is_closed_but_a_subscriber_is_kept() -> None:
    with local_server(Limits(idle_timeout_seconds=0.3)) as local:
        idle = local.raw()
        subscriber = local.raw()
        assert subscriber.request("subscribe")["result"]["subscribed"] is True
        assert idle.closed_by_server()
        assert subscriber.request("ping")["result"]["pong"] is True
        assert local.server.open == 1


def test_connection_limit_refuses_with_a_clear_message() -> None:
    with local_server(Limits(max_connections=3)) as local:
        held = [local.raw() for _ in range(3)]
        for conn in held:
            assert conn.request("ping")["result"]["pong"] is True
        extra = local.raw()
        code, message = error_of(extra.read())
        assert code == TOO_MANY_CONNECTIONS
        assert "too many connections (3 open, the limit is 3)" in message
        assert extra.closed_by_server()
        held[0].close()
        wait_for(lambda: local.server.open == 2, what="the closed connection to be noticed")
        still_served(local)


def test_handler_that_raises_is_an_internal_error_and_the_connection_goes_on(
    local: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(ctx: Context, params: object) -> Reply:
        raise RuntimeError("kaput\nsecond line")

    # Fault injection: a bug in one handler.
    monkeypatch.setitem(METHODS, "stats", replace(METHODS["stats"], handler=broken))
    with capture_logs() as logs:
        conn = local.raw()
        code, message = error_of(conn.request("stats"))
        assert conn.request("ping")["result"]["pong"] is True
    assert code == INTERNAL_ERROR
    assert message == "internal error in stats: RuntimeError: kaput"
    failed = [e for e in logs if e["event"] == "request_failed"]
    assert failed and failed[0]["method"] == "stats" and failed[0]["exc_info"]
    still_served(local)


@pytest.mark.slow
def test_write_refused_while_another_program_holds_the_write_lock_then_recovers(
    local: LocalServer,
) -> None:
    other = sqlite3.connect(local.daemon.db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    conn = local.raw()
    try:
        code, message = error_of(
            conn.request("cache.put", artist="A", album="B", source="musicbrainz", success=True)
        )
        assert code == DAEMON_BUSY
        assert "another program holds a write lock" in message
        status = conn.request("status")["result"]
        assert "write lock" in status["database_error"]
        # Reads go on meanwhile (WAL readers never wait for a writer).
        assert conn.request("tracks.get", persistent_id="0000000000000000")["result"] is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert conn.request("cache.put", artist="A", album="B", source="musicbrainz", success=True)[
        "result"
    ]
    assert conn.request("status")["result"]["database_error"] is None
    assert conn.request("cache.get", artist="a", album="b", source="MusicBrainz")["result"]


def test_rescan_before_the_scanner_exists_is_busy(local: LocalServer) -> None:
    code, message = error_of(local.raw().request("rescan"))
    assert code == DAEMON_BUSY
    assert "still starting" in message


def test_subscription_gets_matching_events_in_order_with_their_seq(local: LocalServer) -> None:
    old = Track("AAAA000000000001", name="So What", album="Kind of Blue")
    new = Track("AAAA000000000001", name="So What", album="Kind of Blue (Legacy)")
    events = [
        ObserverEvent("scan_started", seq=11),
        TrackModified(old, new, ("album",), seq=12),
        ObserverEvent("scan_finished", seq=13),
    ]

    def publish_when_subscribed() -> None:
        wait_for(lambda: local.daemon.hub.subscriber_count == 1, what="the subscription")
        local.call(local.daemon.hub.deliver, events)

    publisher = threading.Thread(target=publish_when_subscribed)
    publisher.start()
    with local.client() as client:
        stream = client.subscribe(["track_modified", "scan_finished"], event_timeout=10)
        modified, finished = itertools.islice(stream, 2)
    publisher.join()
    assert modified["type"] == "track_modified" and modified["seq"] == 12
    assert modified["old"] == {"album": "Kind of Blue"}
    assert modified["new"] == {"album": "Kind of Blue (Legacy)"}
    assert (finished["type"], finished["seq"]) == ("scan_finished", 13)


def test_second_subscribe_on_one_connection_is_refused(local: LocalServer) -> None:
    conn = local.raw()
    assert conn.request("subscribe", types=["track_added"])["result"]["types"] == ["track_added"]
    assert error_of(conn.request("subscribe"))[0] == ALREADY_SUBSCRIBED
    assert local.daemon.hub.subscriber_count == 1
    conn.close()
    wait_for(lambda: local.daemon.hub.subscriber_count == 0, what="unsubscribe on disconnect")


def test_socket_is_owner_only_in_an_owner_only_directory(local: LocalServer) -> None:
    assert stat.S_ISSOCK(os.lstat(local.socket).st_mode)
    assert stat.S_IMODE(os.stat(local.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(local.socket.parent).st_mode) == 0o700


def test_shutdown_answers_first_then_stops_and_removes_the_socket(local: LocalServer) -> None:
    with local.client() as client:
        answer = client.shutdown()
        assert answer == {"stopping": True, "pid": os.getpid()}
        client.wait_closed(10)
    assert local.daemon.shutting_down
    wait_for(lambda: not local.socket.exists(), what="the socket to be removed")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_peer_running_as_another_user_is_refused(local: LocalServer) -> None:
    # Let uid 65534 reach the socket at all, so the credential check is what refuses it.
    for directory in (local.root, local.socket.parent):
        os.chmod(directory, 0o711)
    os.chmod(local.socket, 0o666)
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(local.socket))
                while chunk := sock.recv(65536):
                    os.write(write_end, chunk)
        except BaseException as err:
            os.write(write_end, repr(err).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    received = b""
    with os.fdopen(read_end, "rb") as pipe:
        received = pipe.read()
    os.waitpid(pid, 0)
    assert received.startswith(b"{"), received
    message = orjson.loads(received.splitlines()[0])
    assert message["error"]["code"] == PEER_REFUSED
    assert "does not serve uid 65534" in message["error"]["message"]
    assert local.server.refused == 1
    still_served(local)


def test_cache_put_is_marked_dirty_and_read_back(local: LocalServer) -> None:
    commits = local.daemon.housekeeping.dirty.count
    with local.client() as client:
        stored = client.cache_put(
            "Björk", "Homogenic", "MusicBrainz", data={"year": 1997}, metadata={"mbid": "x"}
        )
        assert stored["source"] == "musicbrainz"
        got = client.cache_get("BJÖRK", "homogenic", "musicbrainz")
        assert got is not None and got["data"] == {"year": 1997}
        assert client.cache_get("Björk", "Homogenic", "discogs") is None
        assert client.invalidate("björk", "HOMOGENIC") == 1
        assert client.cache_get("Björk", "Homogenic", "musicbrainz") is None
        stats = client.stats()["cache"]
        assert (stats["hits"], stats["misses"]) == (1, 2)
    assert local.daemon.housekeeping.dirty.is_set_since(commits)


def test_unknown_track_is_null_and_album_tracks_come_in_order(local: LocalServer) -> None:
    with local.client() as client:
        assert client.track("0000000000000000") is None
        tracks = client.album_tracks("miles davis", "KIND OF BLUE")
        assert [t["track_number"] for t in tracks] == [1, 2, 3, 4, 5]
        first = client.track(tracks[0]["persistent_id"])
        assert first is not None and first["name"] == "So What"
