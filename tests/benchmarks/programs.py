"""What a program that uses musicd sees: catching up on changes, listing the library, batch
cache reads, all against a real daemon subprocess over its socket.

    .venv/bin/python -m tests.benchmarks.programs [--tracks 100000]   # on its own
    .venv/bin/python -m tests.benchmarks.run --only programs           # in the main table
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from daemon.client import MusicdClient
from tests.benchmarks.generate import generate_library
from tests.benchmarks.stores import Figure
from tests.support import daemon_env, wait_for, write_library


def _retag_everything(data: bytes) -> bytes:
    """Every track's genre changed: one track_modified event per track."""
    return data.replace(b"<key>Genre</key><string>", b"<key>Genre</key><string>Re-")


def _catch_up(client: MusicdClient, cursor: str) -> int:
    return sum(len(batch["events"]) for batch in client.iter_changes(cursor, limit=10000))


def bench_programs(tracks: int, repeat: int = 3) -> list[Figure]:
    data = generate_library(tracks, seed=5)
    with daemon_env(data, log={"level": "info"}) as d:
        d.start()
        d.wait_log("snapshot_built", timeout=600)
        with d.client(timeout=600) as client:
            start = client.changes_since(None)["cursor"]
            write_library(d.library, _retag_everything(data))
            d.wait_log("scan_finished", timeout=600, modified=tracks)
            wait_for(lambda: client.status()["pending_events"] == 0, timeout=600, what="merged")

            catch_up: list[float] = []
            events = 0
            for _ in range(repeat):
                began = time.perf_counter()
                events = _catch_up(client, start)
                catch_up.append(time.perf_counter() - began)

            listing: list[float] = []
            listed = 0
            for _ in range(repeat):
                began = time.perf_counter()
                listed = sum(len(p["tracks"]) for p in client.iter_track_pages(limit=10000))
                listing.append(time.perf_counter() - began)

            keys = [(f"Artist {i}", f"Album {i}", "musicbrainz") for i in range(1000)]
            entries: list[dict[str, Any]] = [
                {"artist": a, "album": b, "source": s, "success": True, "data": {"year": 2000}}
                for a, b, s in keys
            ]
            client.cache_put_many(entries)
            many: list[float] = []
            single: list[float] = []
            for _ in range(repeat):
                began = time.perf_counter()
                found = client.cache_get_many(keys)
                many.append(time.perf_counter() - began)
                began = time.perf_counter()
                for a, b, s in keys:
                    client.cache_get(a, b, s)
                single.append(time.perf_counter() - began)
            assert all(found), "every key was stored"
        assert d.stop()[0] == 0

    catch_up_s = statistics.median(catch_up)
    many_ms, single_ms = statistics.median(many) * 1000, statistics.median(single) * 1000
    return [
        Figure(
            f"changes.since: catch up on {events:,} events",
            "/s",
            events / catch_up_s,
            None,
            "-",
            "-",
            None,
            note=f"pages of 10,000 over the socket; {catch_up_s:.2f} s, median of {repeat}",
        ),
        Figure(
            f"tracks.list: every page of {listed:,} tracks",
            "s",
            statistics.median(listing),
            None,
            "-",
            "-",
            None,
            note=f"pages of 10,000 over the socket; median of {repeat}",
        ),
        Figure(
            "cache.get_many of 1,000 keys",
            "ms",
            many_ms,
            single_ms,
            "1,000 single cache.get",
            "faster than single gets",
            many_ms < single_ms,
            ratio=single_ms / many_ms,
            note=f"one connection, same run; median of {repeat}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.programs")
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for f in bench_programs(args.tracks, args.repeat):
        base = f"; {f.baseline_name}: {f.baseline:,.1f} {f.unit}" if f.baseline else ""
        ratio = f" ({f.ratio:.1f}x)" if f.ratio else ""
        print(f"{f.name}: {f.musicd:,.1f} {f.unit}{base}{ratio}  [{f.note}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
