"""Measure musicd's state database beside the former whole-file design, and print the tables.

    .venv/bin/python -m tests.benchmarks.run                 # 100k tracks, 60 s idle window
    .venv/bin/python -m tests.benchmarks.run --scale         # 10k, 100k, 300k: how costs grow
    .venv/bin/python -m tests.benchmarks.run --scale --save after.json --before before.json
    .venv/bin/python -m tests.benchmarks.run --quick         # 20k tracks, shorter windows
    .venv/bin/python -m tests.benchmarks.run --only stores   # no daemon subprocess

Every baseline is measured in the same run on the same data, so the ratio is what counts on a
shared machine. These are benchmarks that print figures, not tests: nothing fails on a slow box.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from tests.benchmarks.daemon import DaemonSettings, Measured, bench_daemon
from tests.benchmarks.stores import Figure, bench_invalidation

KIB = 1024


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.system()} {platform.machine()}, "
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
    if unit == "KiB":
        return f"{value:,.0f} KiB"
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


# The targets are set for a library of this size; other sizes show how each cost grows.
TARGET_TRACKS = 100_000


def daemon_figures(m: Measured) -> list[Figure]:
    figures = _daemon_figures(m)
    if m.settings.tracks != TARGET_TRACKS:
        for f in figures:
            if f.met is not None:
                f.target, f.met = f"({f.target} at {TARGET_TRACKS // 1000}k)", None
    return figures


def _daemon_figures(m: Measured) -> list[Figure]:
    s = m.settings
    size = f"{s.tracks // 1000}k tracks + {s.cache_entries // 1000}k entries"
    assert m.edit is not None and m.state_db is not None and m.state_json is not None
    edit, db, js = m.edit, m.state_db, m.state_json
    latency = statistics.median(m.latencies)
    floor = statistics.median(m.floors)
    get, put = m.get, m.put
    return [
        Figure(
            f"bytes written for one single-track edit, {size}",
            "KiB",
            edit.write_bytes / KIB,
            js.write_bytes / KIB,
            "former design's flush: whole snapshot + meta + delta + cache, fsynced",
            "<= 256 KiB",
            edit.write_bytes <= 256 * KIB,
            note=(
                f"daemon subprocess, /proc/<pid>/io write_bytes from the file's replacement to "
                f"after the periodic checkpoint ({edit.wall_s:.1f} s later); wchar "
                f"{edit.wchar / KIB:,.0f} KiB, of which the log file {edit.log_bytes / KIB:,.0f} "
                f"KiB (baseline wchar {js.wchar / KIB:,.0f} KiB); the same commits in-process: "
                f"wchar {db.wchar / KIB:,.0f} KiB"
            ),
        ),
        Figure(
            f"CPU of the state writes for one single-track edit, {size}",
            "s",
            db.cpu_s,
            js.cpu_s,
            "former design's flush (serialise + write + fsync)",
            "<= the former design's",
            db.cpu_s <= js.cpu_s,
            js.cpu_s / db.cpu_s if db.cpu_s else None,
            note=(
                f"thread CPU, median of 3: the daemon's 6 commits + checkpoint with its store "
                f"functions on a copy of its database; the whole daemon process used "
                f"{edit.cpu_s:.2f} s CPU for the edit, most of it re-reading the library"
            ),
        ),
        Figure(
            f"`cache.put` round trips/s, {put['clients']} clients",
            "/s",
            put["rate"],
            None,
            "-",
            ">= 5,000/s",
            put["rate"] >= 5_000,
            note=(
                f"p50 {put['p50_ms']:.2f} ms; each answered after its commit (group commit); "
                f"daemon CPU per call {put['cpu_us']:.0f} µs, of which the event-loop thread "
                f"{put['loop_us']:.0f} µs"
            ),
        ),
        Figure(
            f"`cache.put` p99 latency, {put['clients']} clients",
            "ms",
            put["p99_ms"],
            None,
            "-",
            "-",
            None,
        ),
        Figure(
            f"`cache.get` round trips/s, {get['clients']} clients",
            "/s",
            get["rate"],
            1 / m.json_lookup_s,
            "each lookup loads api_cache.json (json)",
            ">= 10,000/s",
            get["rate"] >= 10_000,
            ratio=get["rate"] * m.json_lookup_s,
            note=(
                f"p50 {get['p50_ms']:.2f} ms; misses {get['misses']}; daemon CPU per call "
                f"{get['cpu_us']:.0f} µs, of which the event-loop thread {get['loop_us']:.0f} µs"
            ),
        ),
        Figure(
            f"`cache.get` p99 latency, {get['clients']} clients",
            "ms",
            get["p99_ms"],
            m.json_lookup_s * 1000,
            "same",
            "< 5 ms",
            get["p99_ms"] < 5,
        ),
        Figure(
            f"cold start to serving, {size}",
            "s",
            m.cold_s,
            m.json_load["seconds"],
            "former design: decoding its files into objects alone",
            "-",
            None,
            note=(
                f"process start until `status` answers with the tracks; the start's scan "
                f"(library unchanged) took {m.first_scan_s:.2f} s more; database "
                f"{m.db_bytes / 2**20:.0f} MiB"
            ),
        ),
        Figure(
            f"steady RSS, {size}",
            "MiB",
            m.rss,
            m.json_load["rss_mib"],
            "a process holding the former design's state as loaded",
            "<= 80 MiB",
            m.rss <= 80,
            note=(
                f"VmRSS after start + one scan + {s.idle_seconds:g} s idle; peak (VmHWM) "
                f"{m.hwm:.0f} MiB; {m.build_rss:.0f} MiB right after the first start"
            ),
        ),
        Figure(
            f"change-to-event latency, {s.tracks // 1000}k tracks",
            "s",
            latency,
            m.plistlib_s,
            "plistlib full parse + dict diff",
            "<= 0.25 s",
            latency <= 0.25,
            m.plistlib_s / latency if m.plistlib_s else None,
            note=(
                f"median of {len(m.latencies)} album renames (worst {max(m.latencies):.3f} s), "
                f"settle window subtracted; the daemon's scans (read + diff) took "
                f"{statistics.median(m.scan_ms):.0f} ms (median) of it"
                + ("" if m.plistlib_s else "; baseline measured at 100k only")
            ),
        ),
        Figure(
            f"change-to-event latency vs the floor, {s.tracks // 1000}k tracks",
            "s",
            latency,
            floor,
            "read the file + hash() its bytes, right before each change",
            "<= 1.5x the floor",
            latency <= 1.5 * floor,
            note=f"{latency / floor:.2f}x the floor (median of {len(m.floors)} rounds)",
        ),
        Figure(
            f"daemon CPU for one single-track edit, {size}",
            "s",
            edit.cpu_s,
            None,
            "-",
            "<= 0.1 s",
            edit.cpu_s <= 0.1,
            note="the whole process, from the file's replacement to its checkpoint; median of "
            + ", ".join(f"{cpu * 1000:.0f}" for cpu in m.edit_cpus)
            + " ms",
        ),
        Figure(
            "idle CPU per minute, no library changes",
            "s",
            m.idle_cpu,
            m.poll_cpu,
            "stat() the file once a second",
            "< 0.1 s",
            m.idle_cpu < 0.1,
            note=f"measured over {s.idle_seconds:g} s",
        ),
    ]


# Targets of the scale table that are set for a size other than TARGET_TRACKS.
RSS_TARGET_MIB = {100_000: 80.0, 300_000: 100.0}
BUILD_PEAK_TARGET_MIB = {300_000: 150.0}


def _latency(m: Measured) -> float:
    return statistics.median(m.latencies)


def _floor(m: Measured) -> float:
    return statistics.median(m.floors)


# Each column of the scale table: its heading, its key in --save / --before files, its unit,
# and how it is read off one size's measurements.
_SCALE_COLUMNS: list[tuple[str, str, str, Callable[[Measured], float | None]]] = [
    ("steady RSS", "rss_mib", "MiB", lambda m: m.rss),
    ("peak RSS, first build", "build_peak_mib", "MiB", lambda m: m.build_peak),
    ("floor", "floor_s", "s", _floor),
    ("change-to-event", "latency_s", "s", _latency),
    ("/ floor", "ratio", "x", lambda m: _latency(m) / _floor(m)),
    ("edit CPU", "edit_cpu_s", "s", lambda m: m.edit.cpu_s if m.edit else None),
    (
        "edit written",
        "edit_write_kib",
        "KiB",
        lambda m: m.edit.write_bytes / KIB if m.edit else None,
    ),
    ("cold start", "cold_s", "s", lambda m: m.cold_s),
    ("first build", "build_s", "s", lambda m: m.build_s),
    ("idle CPU/min", "idle_cpu_s", "s", lambda m: m.idle_cpu),
    ("cache.get", "get_rate", "/s", lambda m: m.get["rate"]),
    ("cache.put", "put_rate", "/s", lambda m: m.put["rate"]),
]


def scale_row(m: Measured) -> dict[str, Any]:
    """One size's figures for the scale table, and for --save / --before."""
    assert m.edit is not None
    row: dict[str, Any] = {"tracks": m.settings.tracks, "cache_entries": m.settings.cache_entries}
    for _, key, _, read in _SCALE_COLUMNS:
        row[key] = read(m)
    return row


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if unit == "x" else fmt(value, unit)


def scale_table(rows: list[dict[str, Any]], before: dict[int, dict[str, Any]]) -> str:
    """A line per size (so the growth per track shows), the former figures (--before) beside."""
    head = ["tracks (cache entries)"] + [name for name, _, _, _ in _SCALE_COLUMNS] + ["targets"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        n = row["tracks"]
        old = before.get(n, {})
        cells = [f"{n // 1000}k ({row['cache_entries'] // 1000}k)"]
        for _, key, unit, _ in _SCALE_COLUMNS:
            cell = _cell(row[key], unit)
            if key in old:
                cell += f" (was {_cell(old[key], unit)})"
            cells.append(cell)
        met = [f"change-to-event <= 1.5x floor: {'yes' if row['ratio'] <= 1.5 else 'NO'}"]
        if n in RSS_TARGET_MIB:
            ok = row["rss_mib"] <= RSS_TARGET_MIB[n]
            met.append(f"RSS <= {RSS_TARGET_MIB[n]:.0f} MiB: {'yes' if ok else 'NO'}")
        if n in BUILD_PEAK_TARGET_MIB:
            ok = row["build_peak_mib"] <= BUILD_PEAK_TARGET_MIB[n]
            met.append(f"build peak <= {BUILD_PEAK_TARGET_MIB[n]:.0f} MiB: {'yes' if ok else 'NO'}")
        if n == TARGET_TRACKS:
            met.append(f"edit CPU <= 0.1 s: {'yes' if row['edit_cpu_s'] <= 0.1 else 'NO'}")
        cells.append("; ".join(met))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def growth(runs: list[Measured]) -> str:
    """How each cost grows from the first size to the last."""
    first, last = runs[0], runs[-1]

    def pick(m: Measured) -> list[tuple[str, float, str]]:
        assert m.edit is not None and m.state_db is not None and m.state_json is not None
        return [
            ("edit: daemon write_bytes", m.edit.write_bytes / KIB, "KiB"),
            ("edit: former design write_bytes", m.state_json.write_bytes / KIB, "KiB"),
            ("edit: state CPU", m.state_db.cpu_s, "s"),
            ("edit: former design CPU", m.state_json.cpu_s, "s"),
            ("edit: daemon process CPU", m.edit.cpu_s, "s"),
            ("cache.put/s", m.put["rate"], "/s"),
            ("cache.put p99", m.put["p99_ms"], "ms"),
            ("cache.get/s", m.get["rate"], "/s"),
            ("cold start to serving", m.cold_s, "s"),
            ("steady RSS", m.rss, "MiB"),
            ("change-to-event latency", statistics.median(m.latencies), "s"),
            ("database size", m.db_bytes / 2**20, "MiB"),
            ("first start (build)", m.build_s, "s"),
        ]

    head = f"| what | {first.settings.tracks // 1000}k | {last.settings.tracks // 1000}k | growth |"
    lines = [head, "|---|---|---|---|"]
    for (name, a, unit), (_, b, _) in zip(pick(first), pick(last), strict=True):
        grown = f"{b / a:.1f}x" if a else "-"
        lines.append(f"| {name} | {fmt(a, unit)} | {fmt(b, unit)} | {grown} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.run", description=__doc__)
    parser.add_argument("--tracks", type=int, default=None, help="library size (100000)")
    parser.add_argument("--scale", action="store_true", help="run 10k, 100k, then 300k tracks")
    parser.add_argument("--quick", action="store_true", help="smaller and shorter")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle window (60)")
    parser.add_argument(
        "--only", choices=("stores", "daemon", "programs"), default=None, help="run one part only"
    )
    parser.add_argument("--save", type=Path, help="write the scale figures to this JSON file")
    parser.add_argument(
        "--before", type=Path, help="a --save file of a former build: its figures go beside"
    )
    args = parser.parse_args(argv)
    before: dict[int, dict[str, Any]] = {}
    if args.before:
        before = {row["tracks"]: row for row in json.loads(args.before.read_text())}
    if args.scale:
        sizes = [10_000, 100_000, 300_000]
    else:
        sizes = [args.tracks or (20_000 if args.quick else 100_000)]
    idle = args.idle_seconds or (10.0 if args.quick else 60.0)
    # The harness itself logs nothing; the daemon subprocess logs to its own file.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    print(f"musicd benchmarks: {', '.join(f'{n:,}' for n in sizes)} tracks; {machine()}")
    started = time.monotonic()
    tables: list[tuple[str, list[Figure]]] = []
    runs: list[Measured] = []
    if args.only in (None, "daemon"):
        for n in sizes:
            size_started = time.monotonic()
            settings = DaemonSettings(
                tracks=n,
                # The API cache's size does not follow the library's: the memory per track
                # shows from one size to the next.
                cache_entries=20_000 if args.quick else 100_000,
                idle_seconds=idle,
                socket_seconds=3.0 if args.quick else 10.0,
                socket_clients=16,
                latency_rounds=3 if args.quick else 7,
                settle_seconds=0.2,
                plistlib_baseline=n == min(sizes[-1], TARGET_TRACKS),
            )
            measured = bench_daemon(settings)
            runs.append(measured)
            tables.append((f"{n:,} tracks", daemon_figures(measured)))
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in settings.timings.items())
            print(f"{n:,} tracks done in {time.monotonic() - size_started:.0f} s ({steps})")
    if args.only in (None, "stores"):
        entries = 100_000 if args.quick else 1_000_000
        stores_started = time.monotonic()
        inval = bench_invalidation(entries, 1_000, 2 if args.quick else 5)
        tables.append(("cache table", [inval]))
        print(f"invalidation benchmark done in {time.monotonic() - stores_started:.0f} s")
    if args.only in (None, "programs"):
        from tests.benchmarks.programs import bench_programs

        n = sizes[0]
        tables.append((f"programs, {n:,} tracks", bench_programs(n, repeat=2 if args.quick else 3)))
    figures = [f for _, figs in tables for f in figs]
    for title, figs in tables:
        print(f"\n{title}\n")
        print(table(figs))
    if runs:
        rows = [scale_row(m) for m in runs]
        print("\nby library size\n")
        print(scale_table(rows, before))
        if args.save:
            args.save.write_text(json.dumps(rows, indent=1))
    if len(runs) > 1:
        print("\ngrowth\n")
        print(growth(runs))
    missed = [f.name for f in figures if f.met is False]
    print()
    met = sum(f.met is True for f in figures)
    judged = sum(f.met is not None for f in figures)
    print(
        f"{met} of {judged} targets met"
        + (f"; missed: {'; '.join(missed)}" if missed else "")
        + f" ({time.monotonic() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
