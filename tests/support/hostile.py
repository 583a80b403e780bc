"""A hostile client and well-behaved ones, each side run as its own process against a daemon's
socket (so neither shares a GIL with the other or with the test), for the reliability test and
the benchmark.

    python -m tests.support.hostile attack SOCKET SECONDS [ATTACK ...]
    python -m tests.support.hostile clients SOCKET CLIENTS SECONDS TRACKS

`attack` sends, over and over until SECONDS passed, every costly thing we know of: megabyte
batches, garbage as fast as the socket takes it, floods of bad requests, batches of bulk calls,
`cache.get_many` of a 900 KB entry 1,000 times and of made-up sources, half-sent megabyte lines,
answers never read, subscribers that never read, deeply nested JSON. `clients` runs CLIENTS
well-behaved clients (gets, puts, `tracks.list` pages, subscribers) that check every answer.
Each prints one JSON line: what it did, and for `clients` every call's duration and any wrong
answer.
"""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from daemon.client import MusicdClient

BIG_KEY = {"artist": "Hostile", "album": "Huge", "source": "musicbrainz"}
BIG_ENTRY_BYTES = 900_000
# One in this many well-behaved clients is a subscriber.
SUBSCRIBER_EVERY = 10


def seed(socket_path: str) -> None:
    """The big entry the attacks ask for."""
    with MusicdClient(socket_path, timeout=30) as c:
        c.cache_put(
            BIG_KEY["artist"], BIG_KEY["album"], BIG_KEY["source"], data="x" * BIG_ENTRY_BYTES
        )


def _connect(path: str, timeout: float = 30.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def _request(n: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "method": method, "params": params}


def _exchange(s: socket.socket, lines: list[bytes]) -> int:
    """Send the lines while reading their answers (pipelined); how many answer lines came."""
    payload = b"".join(line + b"\n" for line in lines)
    sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
    sender.start()
    buf, answered = b"", 0
    while answered < len(lines):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        answered += buf.count(b"\n")
        buf = buf[buf.rfind(b"\n") + 1 :]
    sender.join(30)
    return answered


class Attack:
    def __init__(self, path: str, deadline: float) -> None:
        self.path = path
        self.deadline = deadline
        self.done: dict[str, int] = {}
        self.errors: list[str] = []
        self.cut_off: dict[str, int] = {}
        self.held: list[socket.socket] = []

    def run(self, name: str, fn: Callable[[], int]) -> None:
        try:
            self.done[name] = self.done.get(name, 0) + fn()
        except OSError as err:
            # Being cut off is the daemon's right; count it, go on.
            self.errors.append(f"{name}: {type(err).__name__}: {err}"[:200])
            self.cut_off[name] = self.cut_off.get(name, 0) + 1

    def megabyte_batch(self) -> int:
        with _connect(self.path) as s:
            return _exchange(s, [b"[" + b"1," * 500_000 + b"1]"] * 3)

    def garbage_fast(self) -> int:
        rng = random.Random(1)
        lines = [bytes(rng.randrange(32, 256) for _ in range(60)) for _ in range(5000)]
        with _connect(self.path) as s:
            return _exchange(s, lines)

    def bad_request_flood(self) -> int:
        batch = orjson.dumps([{"jsonrpc": "2.0", "id": n, "method": "nope"} for n in range(100)])
        with _connect(self.path) as s:
            return 100 * _exchange(s, [batch] * 100)

    def bulk_batches(self) -> int:
        lists = orjson.dumps([_request(n, "tracks.list", limit=10000) for n in range(100)])
        gets = orjson.dumps([_request(n, "cache.get_many", keys=[BIG_KEY] * 8) for n in range(100)])
        with _connect(self.path) as s:
            return _exchange(s, [lists, gets, lists])

    def huge_get_many(self) -> int:
        line = orjson.dumps(_request(1, "cache.get_many", keys=[BIG_KEY] * 1000))
        with _connect(self.path) as s:
            return _exchange(s, [line] * 10)

    def made_up_sources(self) -> int:
        rng = random.Random(time.monotonic_ns())
        lines = []
        for n in range(20):
            keys = [
                {"artist": "a", "album": "b", "source": f"src-{rng.getrandbits(64):x}"}
                for _ in range(1000)
            ]
            lines.append(orjson.dumps(_request(n, "cache.get_many", keys=keys)))
        with _connect(self.path) as s:
            return 1000 * _exchange(s, lines)

    def deep_nesting(self) -> int:
        with _connect(self.path) as s:
            return _exchange(s, [b"[" * 500_000 + b"]" * 500_000, b"{" + b'"a":{' * 100_000])

    def half_sent_lines(self, count: int = 100) -> int:
        sent = 0
        for _ in range(count):
            s = _connect(self.path, timeout=2)
            self.held.append(s)
            try:
                s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "' + b"x" * ((1 << 20) - 100))
                sent += 1
            except OSError:
                pass  # cut off (the total held is bounded): that is the point
        return sent

    def never_reads(self, count: int = 10) -> int:
        line = orjson.dumps(_request(1, "tracks.list", limit=10000)) + b"\n"
        sub = orjson.dumps(_request(1, "subscribe")) + b"\n"
        for n in range(count):
            s = _connect(self.path, timeout=2)
            self.held.append(s)
            try:
                s.sendall(sub if n % 2 else line * 20)
            except OSError:
                pass
        return count

    def release(self) -> None:
        for s in self.held:
            s.close()
        self.held.clear()

    def all_once(self, only: list[str], *, whole: bool = False) -> None:
        for name in ATTACKS:
            if time.monotonic() >= self.deadline and not whole:
                break
            if not only or name in only:
                self.run(name, getattr(self, name))
        self.release()


# In this order in a round; the first two hold their connections until the round's end.
ATTACKS = [
    "half_sent_lines",
    "never_reads",
    "megabyte_batch",
    "garbage_fast",
    "bad_request_flood",
    "bulk_batches",
    "huge_get_many",
    "made_up_sources",
    "deep_nesting",
]


def attack(path: str, seconds: float, only: list[str]) -> dict[str, Any]:
    a = Attack(path, time.monotonic() + seconds)
    rounds = 0
    while rounds == 0 or time.monotonic() < a.deadline:
        a.all_once(only, whole=rounds == 0)  # every attack at least once
        rounds += 1
        # Not faster than this: holding every connection the daemon allows (a known limit,
        # README) would lock the well-behaved clients out, and that is not what is measured.
        time.sleep(0.2)
    return {"rounds": rounds, "done": a.done, "cut_off": a.cut_off, "errors": a.errors[:20]}


def _subscriber(path: str, stop: threading.Event, seen: list[int], wrong: list[str]) -> None:
    with MusicdClient(path, timeout=30) as c:
        for event in c.subscribe():
            if seen and event["seq"] <= seen[-1]:
                wrong.append(f"event seq {event['seq']} after {seen[-1]}")
            seen.append(event["seq"])
            if stop.is_set():
                return


def _worker(
    path: str, n: int, stop: threading.Event, tracks: int, out: list[int], wrong: list[str]
) -> None:
    rng = random.Random(n)
    with MusicdClient(path, timeout=30) as c:
        i = 0
        while not stop.is_set():
            i += 1
            kind = i % 4
            t0 = time.perf_counter()
            try:
                if kind == 0:
                    ok = c.ping()["pong"] is True
                elif kind == 1:
                    c.cache_put(f"Artist {n}", f"Album {i % 50}", "discogs", data={"i": i})
                    got = c.cache_get(f"Artist {n}", f"Album {i % 50}", "discogs")
                    ok = got is not None and got["data"] == {"i": i}
                elif kind == 2:
                    key = (f"Artist {n}", f"Album {rng.randrange(50)}", "lastfm")
                    ok = c.cache_get(*key) is None
                else:
                    after = f"{0xA000000000000000 + rng.randrange(tracks):016X}"
                    page = c.tracks_list(after=after, limit=100)
                    ok = all(t["persistent_id"] > after for t in page["tracks"])
            except Exception as err:
                wrong.append(f"client {n}: {type(err).__name__}: {err}"[:300])
                return
            out.append(int((time.perf_counter() - t0) * 1e6))
            if not ok:
                wrong.append(f"client {n}: a wrong answer to call {i} (kind {kind})")


def clients(path: str, count: int, seconds: float, tracks: int) -> dict[str, Any]:
    stop = threading.Event()
    durations: list[list[int]] = [[] for _ in range(count)]
    seen: list[list[int]] = [[] for _ in range(count)]
    wrong: list[str] = []
    threads = []
    for n in range(count):
        if n % SUBSCRIBER_EVERY == SUBSCRIBER_EVERY - 1:
            args: tuple[Any, ...] = (path, stop, seen[n], wrong)
            threads.append(threading.Thread(target=_subscriber, args=args, daemon=True))
        else:
            args = (path, n, stop, tracks, durations[n], wrong)
            threads.append(threading.Thread(target=_worker, args=args, daemon=True))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    # A subscriber returns at its next event: make one (a checkpoint of a put).
    with MusicdClient(path, timeout=30) as c:
        c.cache_put("Subscribers", "Wake", "discogs", data=1)
        c.flush()
    until = time.monotonic() + 60
    for t in threads:
        t.join(max(0.0, until - time.monotonic()))
    calls = sorted(d for per in durations for d in per)
    return {
        "calls": len(calls),
        "us": calls,
        "events_seen": [len(s) for s in seen if s],
        "wrong": wrong[:20],
        "stuck": sum(t.is_alive() for t in threads),
    }


def percentile(sorted_us: list[int], p: float) -> float:
    """The p-th percentile of sorted durations in µs, in ms."""
    if not sorted_us:
        return 0.0
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * p / 100))] / 1000


def main(argv: list[str]) -> int:
    mode, path = argv[0], argv[1]
    if mode == "attack":
        result = attack(path, float(argv[2]), argv[3:])
    else:
        result = clients(path, int(argv[2]), float(argv[3]), int(argv[4]))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
