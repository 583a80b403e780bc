"""Every request's cost is bounded: items in a batch, bytes in an answer, lines in the log."""

from __future__ import annotations

import logging
import queue
from typing import Any

import orjson
from structlog.testing import capture_logs

from daemon.control.log_limit import LogLimit
from daemon.control.protocol import (
    ANSWER_TOO_LARGE,
    BATCH_TOO_LARGE,
    INVALID_REQUEST,
    MAX_ANSWER_BYTES,
    MAX_BATCH_ITEMS,
)
from daemon.logs import _PassThroughQueueHandler
from daemon.service.programs import MAX_CONSUMERS
from tests.control.local_server import LocalServer
from tests.support import wait_for


def request(n: int, method: str = "ping", **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "method": method, "params": params}


def test_a_batch_over_the_bound_gets_one_error_and_runs_nothing(local: LocalServer) -> None:
    conn = local.raw()
    # The line: a megabyte of `1,`, half a million items.
    line = b"[" + b",".join([b"1"] * 500_000) + b"]"
    with capture_logs() as logs:
        answer = conn.exchange(line)
    assert isinstance(answer, dict), "one error, not one per item"
    assert answer["error"]["code"] == BATCH_TOO_LARGE
    assert f"at most {MAX_BATCH_ITEMS}" in answer["error"]["message"]
    assert len([e for e in logs if e["event"] == "request_rejected"]) == 1
    full = [request(n) for n in range(MAX_BATCH_ITEMS)]
    assert len(conn.exchange(orjson.dumps(full))) == MAX_BATCH_ITEMS
    assert conn.request("ping")["result"]["pong"] is True


def big_entry(local: LocalServer, size: int) -> None:
    with local.client() as client:
        client.cache_put("Björk", "Homogenic", "musicbrainz", data="x" * size)


def test_cache_get_many_refuses_an_answer_over_the_bound_and_says_what_fits(
    local: LocalServer,
) -> None:
    big_entry(local, 900_000)
    key = {"artist": "Björk", "album": "Homogenic", "source": "musicbrainz"}
    conn = local.raw()
    answer = conn.request("cache.get_many", keys=[key] * 1000)
    assert answer["error"]["code"] == ANSWER_TOO_LARGE
    fits = answer["error"]["data"]["fits"]
    assert fits == MAX_ANSWER_BYTES // 900_000
    assert "ask for the rest in further calls" in answer["error"]["message"]
    got = conn.request("cache.get_many", keys=[key] * fits)["result"]
    assert len(got) == fits and got[0]["data"] == "x" * 900_000


def test_a_batch_stops_running_once_its_answer_reached_the_bound(local: LocalServer) -> None:
    big_entry(local, 900_000)
    key = {"artist": "Björk", "album": "Homogenic", "source": "musicbrainz"}
    batch = [request(n, "cache.get_many", keys=[key] * 2) for n in range(MAX_BATCH_ITEMS)]
    conn = local.raw()
    answers = conn.exchange(orjson.dumps(batch))
    assert [a["id"] for a in answers] == list(range(MAX_BATCH_ITEMS))
    run = [a for a in answers if "result" in a]
    assert len(run) == -(-MAX_ANSWER_BYTES // 1_800_000)
    refused = answers[len(run) :]
    assert {a["error"]["code"] for a in refused} == {ANSWER_TOO_LARGE}
    assert "send it in another batch" in refused[0]["error"]["message"]
    assert conn.request("ping")["result"]["pong"] is True


def test_tracks_list_pages_within_the_bound(local: LocalServer) -> None:
    with local.client() as client:
        everything = client.tracks_list(limit=10000)
        assert everything["next"] is None and everything["tracks"]
    # A page that is cut short by the byte bound says where to go on, like one cut by `limit`.
    program = local.daemon.programs
    one = local.call(_list, program, 200)
    assert len(one["tracks"]) == 1 and one["next"] == one["tracks"][0]["persistent_id"]


async def _list(programs: Any, max_bytes: int) -> dict[str, Any]:
    page = await programs.tracks_list(None, 10000, None, max_bytes)
    return {"tracks": orjson.loads(orjson.dumps(page["tracks"])), "next": page["next"]}


def test_request_lines_of_one_connection_are_aggregated(local: LocalServer) -> None:
    conn = local.raw()
    with capture_logs() as logs:
        for _ in range(3):
            conn.exchange(orjson.dumps([{"bad": n} for n in range(MAX_BATCH_ITEMS)]))
        local.call(local.server.log_limit.flush)
    rejected = [e for e in logs if e["event"] == "request_rejected"]
    assert len(rejected) == local.server.log_limit.per_connection
    (summary,) = [e for e in logs if e["event"] == "request_lines_suppressed"]
    assert summary["lines"] == 3 * MAX_BATCH_ITEMS - len(rejected)
    assert summary["connections"] == 1


def test_log_limit_allows_each_interval_anew_and_bounds_all_connections() -> None:
    now = [0.0]
    limit = LogLimit(per_connection=2, total=5, interval=10.0, clock=lambda: now[0])
    assert [limit.allow(1) for _ in range(3)] == [True, True, False]
    assert [limit.allow(c) for c in (2, 2, 3, 4)] == [True, True, True, False]
    assert limit.suppressed == 2
    now[0] = 10.0
    with capture_logs() as logs:
        assert limit.allow(1) is True
    assert logs[0]["event"] == "request_lines_suppressed" and logs[0]["lines"] == 2
    assert limit.suppressed == 0


def test_the_log_queue_is_bounded_and_counts_what_it_dropped() -> None:
    records: queue.Queue[logging.LogRecord] = queue.Queue(2)
    handler = _PassThroughQueueHandler(records)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("t", logging.INFO, __file__, 0, msg, None, None)

    for n in range(5):
        handler.handle(record(f"r{n}"))
    assert handler.dropped == 3
    assert [records.get_nowait().msg for _ in range(2)] == ["r0", "r1"]
    handler.handle(record("after"))
    notice, after = records.get_nowait(), records.get_nowait()
    assert (notice.msg, notice.__dict__["count"], after.msg) == ("log_records_dropped", 3, "after")


def test_past_the_total_held_the_connection_holding_most_is_cut_off(local: LocalServer) -> None:
    holdings = local.server.holdings
    local.call(setattr, holdings, "limit", 1_000_000)
    big = local.raw()
    big.send(b'{"half": "' + b"a" * 900_000)
    wait_for(lambda: holdings.total >= 900_000, what="the half-sent line to be read")
    small = local.raw()
    small.send(b'{"half": "' + b"b" * 200_000)
    assert big.closed_by_server()
    small.send(b'"}\n')
    assert small.read()["error"]["code"] == INVALID_REQUEST
    assert holdings.cut_off == 1
    wait_for(lambda: holdings.total == 0, what="what was held to be let go")
    with local.client() as client:
        assert client.ping()["pong"] is True


def test_requests_sent_ahead_by_a_client_that_left_are_not_run(local: LocalServer) -> None:
    before = local.server.answering.requests
    conn = local.raw()
    line = orjson.dumps(request(1, "tracks.list", limit=10000)) + b"\n"
    conn.send(line * 200)
    conn.close()
    wait_for(lambda: local.server.open == 0, what="the connection to end")
    assert local.server.answering.requests - before < 200
    with local.client() as client:
        assert client.ping()["pong"] is True


def test_named_cursors_are_bounded_and_the_existing_ones_still_move(local: LocalServer) -> None:
    conn = local.raw()
    cursor = conn.request("changes.since")["result"]["cursor"]
    refused = []
    for start in range(0, MAX_CONSUMERS + 100, MAX_BATCH_ITEMS):
        batch = [
            request(n, "cursor.commit", consumer=f"program {n}", cursor=cursor)
            for n in range(start, start + MAX_BATCH_ITEMS)
        ]
        refused += [a for a in conn.exchange(orjson.dumps(batch)) if "error" in a]
    assert len(refused) >= 100
    assert "too many named cursors (at most 1000" in refused[0]["error"]["message"]
    again = conn.request("cursor.commit", consumer="program 0", cursor=cursor)
    assert again["result"]["committed"] is True
