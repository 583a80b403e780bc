"""Measure musicd against the obvious alternatives and print one table.

    .venv/bin/python -m tests.benchmarks.run                 # 100k tracks, 60 s idle window
    .venv/bin/python -m tests.benchmarks.run --quick         # 20k tracks, shorter windows
    .venv/bin/python -m tests.benchmarks.run --only stores   # no daemon subprocess

Every baseline is measured in the same run on the same data, so the ratio is what counts on a
shared machine. These are benchmarks that print figures, not tests: nothing fails on a slow box.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import time

import structlog

from tests.benchmarks.daemon import DaemonSettings, bench_daemon
from tests.benchmarks.stores import (
    Figure,
    bench_cold_load,
    bench_flush_stall,
    bench_invalidation,
)


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{dt.date.today().isoformat()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} at the start"
    )


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"
    if unit == "ms":
        return f"{value:,.2f} ms" if value < 10 else f"{value:,.1f} ms"
    return f"{value:,.1f} {unit}"


def ratio(f: Figure) -> str:
    if f.ratio is None:
        return "-"
    return f"{f.ratio:,.0f}x" if f.ratio >= 100 else f"{f.ratio:.1f}x"


def table(figures: list[Figure]) -> str:
    head = ("what", "musicd", "baseline", "ratio", "target", "met", "baseline is", "notes")
    rows = [head]
    rows += [
        (
            f.name,
            fmt(f.musicd, f.unit),
            fmt(f.baseline, f.unit),
            ratio(f),
            f.target,
            "-" if f.met is None else "yes" if f.met else "NO",
            f.baseline_name,
            f.note,
        )
        for f in figures
    ]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("---" for _ in head) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.run", description=__doc__)
    parser.add_argument("--tracks", type=int, default=None, help="library size (100000)")
    parser.add_argument("--quick", action="store_true", help="smaller and shorter")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle window (60)")
    parser.add_argument(
        "--only", choices=("stores", "daemon", "programs"), default=None, help="run one part only"
    )
    args = parser.parse_args(argv)
    tracks = args.tracks or (20_000 if args.quick else 100_000)
    idle = args.idle_seconds or (10.0 if args.quick else 60.0)
    # The harness itself logs nothing; the daemon subprocess logs to its own file.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    print(f"musicd benchmarks: {tracks:,} tracks; {machine()}", flush=True)
    started = time.monotonic()
    figures: list[Figure] = []
    if args.only in (None, "daemon"):
        settings = DaemonSettings(
            tracks=tracks,
            cache_entries=tracks,
            idle_seconds=idle,
            socket_seconds=3.0 if args.quick else 10.0,
            socket_clients=16,
            latency_rounds=3 if args.quick else 7,
            settle_seconds=0.2,
        )
        figures += bench_daemon(settings)
        print("daemon benchmarks done", flush=True)
    if args.only in (None, "stores"):
        repeat = 3 if args.quick else 7
        figures.append(bench_cold_load(tracks, repeat))
        figures.append(
            bench_invalidation(
                entries=100_000 if args.quick else 1_000_000,
                albums=1_000,
                baseline_albums=2 if args.quick else 5,
            )
        )
        figures.append(bench_flush_stall(tracks, tracks, repeat=5 if args.quick else 10))
    if args.only in (None, "programs"):
        from tests.benchmarks.programs import bench_programs

        figures += bench_programs(tracks, repeat=2 if args.quick else 3)
    print()
    print(table(figures))
    missed = [f.name for f in figures if f.met is False]
    print()
    print(f"{len(figures) - len(missed)} of {len(figures)} targets met", end="")
    print(f"; missed: {'; '.join(missed)}" if missed else "", end="")
    print(f" ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
