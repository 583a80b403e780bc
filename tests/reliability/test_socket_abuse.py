"""Socket abuse against the real daemon: fuzzed lines, connection floods, half-sent lines,
oversized lines, subscribers that never read. The daemon stays up, its memory stays bounded,
and a well-behaved client's requests keep succeeding throughout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.client import ClientError, MusicdClient
from tests.reliability.conftest import Report
from tests.reliability.harness import (
    faulty_env,
    fuzz_settings,
    iterations,
    json_leaf,
    json_value,
    soak_factor,
    to_json,
)
from tests.support.common import wait_for
from tests.support.library import SynthLibrary, write_library
from tests.support.runner import DaemonProc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180 * soak_factor())]

N_TRACKS = 1500
# Closing the connection after these is part of the protocol, not a failure.
CLOSING_CODES = {-32004, -32005, -32006}
# Not fuzzed: they stop the daemon or turn the connection into an event stream.
METHODS = [
    "ping",
    "status",
    "stats",
    "flush",
    "rescan",
    "tracks.get",
    "tracks.album",
    "cache.get",
    "cache.put",
    "cache.invalidate",
    "cache.clear",
]


@dataclass
class Prober:
    """A well-behaved client on its own connection, pinging in a thread while abuse goes on."""

    d: DaemonProc
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    worst_ms: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        with MusicdClient(self.d.socket, timeout=10) as c:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    if n % 3:
                        c.ping()
                    else:
                        c.cache_put("Probe", "Album", "probe", data={"n": n})
                        got = c.cache_get("Probe", "Album", "probe")
                        assert got is not None and got["data"] == {"n": n}
                except Exception as err:
                    self.failed.append(f"{type(err).__name__}: {err}")
                    c.close()
                    continue
                self.ok += 1
                self.worst_ms = max(self.worst_ms, (time.monotonic() - started) * 1000)
                time.sleep(0.005)

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=15)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProc]:
    lib = SynthLibrary.generate(N_TRACKS)
    with faulty_env(lib.render(), library={"settle_seconds": 0.05}) as d:
        d.start()
        d.wait_log("flush_finished")
        d.lib = lib  # type: ignore[attr-defined]
        yield d
        assert d.stop()[0] == 0, d.stderr()[-2000:]


def raw_connect(d: DaemonProc) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(str(d.socket))
    except OSError:
        s.close()
        raise
    return s


def read_lines(s: socket.socket, count: int) -> list[bytes]:
    buf = b""
    lines: list[bytes] = []
    while len(lines) < count:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines += [line for line in done if line.strip()]
    return lines


# -- fuzzing ---------------------------------------------------------------------------------

rpc_request = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2, None, ""]),
        "id": st.integers() | st.text(max_size=8) | st.none() | st.floats() | json_value,
        "method": st.sampled_from(METHODS) | st.text(max_size=20) | json_value,
        "params": json_value
        | st.fixed_dictionaries(
            {},
            optional={
                "artist": st.text(max_size=20) | json_leaf,
                "album": st.text(max_size=20) | json_leaf,
                "source": st.text(max_size=20) | json_leaf,
                "success": st.booleans() | json_leaf,
                "persistent_id": st.text(max_size=20) | json_leaf,
                "data": json_value,
                "accept_removals": st.just(False) | json_leaf,
            },
        ),
        "extra": json_value,
    },
)
rpc_line = st.one_of(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
    rpc_request.map(to_json),
    st.lists(rpc_request, max_size=4).map(to_json),
    json_value.map(to_json),
)


def check_answers(lines: list[bytes], answers: list[bytes]) -> None:
    expected = [line for line in lines if line.strip()]
    assert len(answers) == len(expected), (expected, answers)
    for line, answer in zip(expected, answers, strict=True):
        message = orjson.loads(answer)
        items = message if isinstance(message, list) else [message]
        assert items, (line, answer)
        for item in items:
            assert item.get("jsonrpc") == "2.0", (line, answer)
            assert ("result" in item) != ("error" in item), (line, answer)
            if "error" in item:
                assert isinstance(item["error"]["code"], int)
                assert isinstance(item["error"]["message"], str) and item["error"]["message"]
                assert item["error"]["code"] not in CLOSING_CODES, (line, answer)
            if item.get("error", {}).get("code") == -32603:
                raise AssertionError(f"internal error for {line!r}: {answer!r}")


def test_fuzzed_requests_get_answers_and_never_disturb_others(
    daemon: DaemonProc, report: Report
) -> None:
    tally = report.case("socket_fuzz")
    rss_before = daemon.rss_kib()

    @fuzz_settings(300)
    @given(lines=st.lists(rpc_line, min_size=1, max_size=5))
    def fuzz(lines: list[bytes]) -> None:
        tally.tried += 1
        with raw_connect(daemon) as s:
            s.sendall(b"".join(line + b"\n" for line in lines))
            answers = read_lines(s, len([line for line in lines if line.strip()]))
            check_answers(lines, answers)
            # The connection is still usable after whatever was sent on it.
            s.sendall(b'{"jsonrpc": "2.0", "id": "after", "method": "ping"}\n')
            after = orjson.loads(read_lines(s, 1)[0])
            assert after["result"]["pong"] is True
        tally.survived += 1

    with Prober(daemon) as prober:
        fuzz()
    assert not prober.failed, prober.failed[:5]
    assert prober.ok > 0
    growth = (daemon.rss_kib() - rss_before) / 1024
    tally.notes["rss_growth_mib"] = round(growth, 1)
    assert growth < 64
    assert not daemon.find_logs("request_failed")
    assert not daemon.find_logs("connection_failed")


# -- floods ----------------------------------------------------------------------------------


def open_and_drop(d: DaemonProc, n: int, how: int) -> int:
    """Open `n` connections (as many as the listen backlog lets in) and drop each one."""
    done = 0
    for i in range(n):
        try:
            s = raw_connect(d)
        except BlockingIOError:
            continue  # EAGAIN: the kernel's listen backlog is full for a moment
        try:
            kind = (i + how) % 5
            if kind == 1:
                s.sendall(b'{"jsonrpc": "2.0", "id": 1, "meth')  # half a line, then gone
            elif kind == 2:
                s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "status"}\n')  # never read
            elif kind == 3:
                s.sendall(b"\xff\xfe garbage\n")
            elif kind == 4:
                # Reset instead of a clean close.
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
        except OSError:
            pass
        s.close()
        done += 1
    return done


def test_thousands_of_connections_opened_and_dropped(daemon: DaemonProc, report: Report) -> None:
    tally = report.case("socket_connection_flood")
    rss_before = daemon.rss_kib()
    with MusicdClient(daemon.socket, timeout=10) as c:
        total_before = c.stats()["control"]["connections_total"]
    threads_n, per_thread = 8, iterations(1000)
    results: list[int] = []
    started = time.monotonic()
    with Prober(daemon) as prober:
        threads = [
            threading.Thread(
                target=lambda k=k: results.append(open_and_drop(daemon, per_thread, k))
            )
            for k in range(threads_n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        # The daemon works through its backlog of dropped connections; the prober is served
        # all along.
        def accepted_all() -> bool:
            try:
                with MusicdClient(daemon.socket, timeout=10) as c:
                    total = c.stats()["control"]["connections_total"]
            except ClientError:
                return False  # EAGAIN: the listen backlog is still full
            return bool(total - total_before >= sum(results))

        wait_for(accepted_all, timeout=60, what="every flood connection accepted")
        seconds = time.monotonic() - started
    # Connections the kernel refused (listen backlog full) never reached the daemon.
    tally.tried += sum(results)
    tally.survived += sum(results)
    tally.notes["backlog_refused"] = threads_n * per_thread - sum(results)
    assert not prober.failed, prober.failed[:5]
    assert prober.ok >= 3 * seconds, (prober.ok, seconds)
    with MusicdClient(daemon.socket, timeout=10) as c:
        wait_for(lambda: c.status()["connections"] == 1, timeout=15, what="connections closed")
    tally.notes.update(
        seconds=round(seconds, 1),
        prober_requests=prober.ok,
        prober_worst_ms=round(prober.worst_ms),
    )
    assert (daemon.rss_kib() - rss_before) / 1024 < 64


def test_half_sent_lines_and_oversized_lines(daemon: DaemonProc, report: Report) -> None:
    tally = report.case("socket_half_sent_and_oversized")
    holders: list[socket.socket] = []
    with Prober(daemon) as prober:
        try:
            for i in range(300):
                s = raw_connect(daemon)
                s.sendall(b'{"jsonrpc": "2.0", "id": %d, "method": "pi' % i)
                holders.append(s)
            tally.tried += 300
            # A fresh client still gets in and is answered while 300 half lines wait.
            with MusicdClient(daemon.socket, timeout=10) as c:
                assert c.ping()["pong"] is True
                assert c.status()["connections"] >= 300
            # Finishing a half-sent line answers it.
            holders[0].sendall(b'ng"}\n')
            assert orjson.loads(read_lines(holders[0], 1)[0])["result"]["pong"] is True
            tally.survived += 300
            # Oversized: refused with -32004, and that connection alone is closed.
            answered = 0
            for size in (2 * 1024 * 1024, 8 * 1024 * 1024):
                tally.tried += 1
                with raw_connect(daemon) as s:
                    try:
                        s.sendall(b"[" + b"1," * (size // 2))
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # it may close before taking it all: fine
                    # The answer is -32004, unless the close (with the rest of the line still
                    # unread) resets the connection first.
                    try:
                        answer = read_lines(s, 1)
                        assert answer and orjson.loads(answer[0])["error"]["code"] == -32004
                        assert s.recv(10) == b""
                        answered += 1
                    except ConnectionResetError:
                        pass
                tally.survived += 1
            tally.notes["oversized_answered"] = answered
        finally:
            for s in holders:
                s.close()
    assert not prober.failed, prober.failed[:5]


def test_a_subscriber_that_never_reads_is_cut_off_and_others_keep_up(
    daemon: DaemonProc, report: Report
) -> None:
    tally = report.case("socket_stalled_subscriber")
    lib: SynthLibrary = daemon.lib  # type: ignore[attr-defined]
    rss_before = daemon.rss_kib()
    mark = daemon.mark()
    # The stalled one: subscribes, then never reads again.
    stalled = raw_connect(daemon)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "subscribe"}\n')
    # A subscriber that keeps up, in a thread.
    received: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    subscribed = threading.Event()

    def follow() -> None:
        with MusicdClient(daemon.socket, timeout=30) as c:
            c.call("subscribe", types=["track_modified"])
            subscribed.set()
            try:
                while True:
                    message = c._read_message(5)
                    if message.get("method") == "event":
                        received.append(message["params"])
                    elif message.get("method") == "subscription_dropped":
                        dropped.append(message["params"])
            except Exception:
                return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    subscribed.wait(10)
    rounds = iterations(4)
    with Prober(daemon) as prober:
        for r in range(rounds):
            for pid in lib.tracks:
                lib.tracks[pid]["Genre"] = f"Round {r}"
            write_library(daemon.library, lib.render())
            daemon.wait_log("scan_finished", after=mark, modified=N_TRACKS, timeout=30)
            mark = daemon.mark()
            # The follower keeps up: it has read this round before the next one starts.
            wait_for(
                lambda r=r: len(received) >= (r + 1) * N_TRACKS or dropped,
                timeout=30,
                what="the follower reading the round",
            )
    tally.tried += 1
    wait_for(
        lambda: (
            daemon.find_logs("subscriber_dropped") or daemon.find_logs("subscriber_disconnected")
        ),
        timeout=30,
        what="the stalled subscriber cut off",
    )
    follower.join(timeout=30)
    stalled.close()
    assert not prober.failed, prober.failed[:5]
    # The one that kept up got every event, in order, without a gap.
    seqs = [e["seq"] for e in received]
    assert not dropped, dropped
    assert len(received) == rounds * N_TRACKS, len(received)
    assert seqs == sorted(seqs)
    tally.survived += 1
    growth = (daemon.rss_kib() - rss_before) / 1024
    tally.notes["rss_growth_mib"] = round(growth, 1)
    assert growth < 96


def test_more_connections_than_the_limit_are_refused_then_served_again(
    daemon: DaemonProc, report: Report
) -> None:
    tally = report.case("socket_connection_limit")
    with MusicdClient(daemon.socket, timeout=10) as c:
        limit = c.stats()["control"]["max_connections"]
    holders: list[socket.socket] = []
    refused = 0
    with Prober(daemon) as prober:
        try:
            for _ in range(limit + 20):
                s = raw_connect(daemon)
                holders.append(s)
            for s in holders[-10:]:
                s.settimeout(5)
                answer = read_lines(s, 1)
                if answer and orjson.loads(answer[0])["error"]["code"] == -32005:
                    refused += 1
        finally:
            for s in holders:
                s.close()
    tally.tried += 1
    assert refused == 10
    # The prober held its connection all along, so it was never refused.
    assert not prober.failed, prober.failed[:5]
    with MusicdClient(daemon.socket, timeout=10) as c:
        wait_for(lambda: c.status()["connections"] == 1, timeout=15, what="connections closed")
        assert c.ping()["pong"] is True
    tally.survived += 1
