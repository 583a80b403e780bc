"""Benchmarks of the real daemon subprocess on a generated library and a filled API cache.

The daemon is started once to build `musicd.db` from the library (its first start), stopped,
and started again, as after a login: every figure but the build is of that second start.
"""

from __future__ import annotations

import os
import plistlib
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from daemon.client import MusicdClient
from daemon.errors import DaemonError
from tests.benchmarks.generate import generate_library, move_track, rename_album
from tests.benchmarks.stores import (
    EditCost,
    album_answers,
    bench_edit_state,
    cache_entries,
    cpu_seconds,
    proc_io,
    scratch,
)
from tests.support import (
    PLIST_KEYS,
    REPO,
    SOURCES,
    DaemonProc,
    daemon_env,
    db_seed_cache,
    wait_for,
    write_library,
)

# The plist keys the daemon keeps, for the plistlib baseline.
KEPT = tuple(PLIST_KEYS)
# The periodic checkpoint's delay after a commit (30 s by default): shorter here so that an
# edit's measurement window can include its checkpoint without waiting half a minute.
FLUSH_INTERVAL_SECONDS = 2.0
# Single-track edits measured, each moving another track.
EDIT_ROUNDS = 3


@dataclass
class DaemonSettings:
    tracks: int
    cache_entries: int
    idle_seconds: float
    socket_seconds: float
    socket_clients: int
    latency_rounds: int
    settle_seconds: float
    # The plistlib parse the latency is compared with: about 10 s and 1 GiB per 100k tracks.
    plistlib_baseline: bool = True
    # Seconds each preparation step took, for the report.
    timings: dict[str, float] = field(default_factory=dict)


# -- the daemon


@contextmanager
def running_daemon(root: Path, data: bytes, settings: DaemonSettings) -> Iterator[DaemonProc]:
    """The daemon on the generated library in `root` (which the caller removes)."""
    with daemon_env(
        data,
        root=root,
        library={"settle_seconds": settings.settle_seconds, "verify_seconds": 60},
        state={"flush_interval_seconds": FLUSH_INTERVAL_SECONDS},
        log={"level": os.environ.get("BENCH_LOG_LEVEL", "info")},
    ) as d:
        yield d


def status_when_serving(d: DaemonProc, tracks: int, timeout: float) -> dict[str, Any]:
    """Poll `status` until the socket answers with the library's tracks."""

    def serving() -> dict[str, Any] | None:
        d.check_alive("status")
        try:
            with d.client(timeout=5) as c:
                status: dict[str, Any] = c.status()
        except (DaemonError, OSError):
            time.sleep(0.005)
            return None
        return status if status["library"]["track_count"] == tracks else None

    result: dict[str, Any] = wait_for(serving, timeout, what="status with the tracks")
    return result


def prepare(root: Path, settings: DaemonSettings) -> bytes:
    """The library's bytes, and the cache seeded in the state dir the daemon will use."""
    started = time.monotonic()
    data = generate_library(settings.tracks)
    settings.timings["generate library"] = time.monotonic() - started
    started = time.monotonic()
    db_seed_cache(root / "state", cache_entries(settings.cache_entries))
    settings.timings["seed cache"] = time.monotonic() - started
    return data


def read_only(d: DaemonProc) -> sqlite3.Connection:
    uri = f"{(d.state_dir / 'musicd.db').resolve().as_uri()}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=5)


# -- change-to-event latency


def seed_parse_and_diff(path: Path, previous: dict[str, dict[str, Any]]) -> float:
    """The obvious alternative: plistlib the whole file, then diff dicts of the kept keys."""
    started = time.perf_counter()
    current = kept_tracks(path)
    changed = [pid for pid, t in current.items() if previous.get(pid) != t]
    removed = [pid for pid in previous if pid not in current]
    assert changed or removed
    return time.perf_counter() - started


def kept_tracks(path: Path) -> dict[str, dict[str, Any]]:
    with path.open("rb") as fh:
        doc = plistlib.load(fh)
    return {t["Persistent ID"]: {k: t.get(k) for k in KEPT} for t in doc["Tracks"].values()}


def write_like_music_app(path: Path, data: bytes) -> float:
    """Write to a temp file and rename it over the library; returns when the rename was done."""
    write_library(path, data)
    return time.monotonic()


def subscriber(socket_path: Path, events: queue.Queue[tuple[float, dict[str, Any]]]) -> None:
    with MusicdClient(socket_path, timeout=None) as c:
        for event in c.subscribe(["track_modified"]):
            events.put((time.monotonic(), event))


def read_floor(path: Path) -> float:
    """The least any reader of the file pays to notice a change: read it whole (from the page
    cache) and hash its bytes once."""
    started = time.perf_counter()
    with path.open("rb", buffering=0) as fh:
        data = fh.readall()
    hash(data)
    return time.perf_counter() - started


def measure_latency(
    d: DaemonProc, data: bytes, settings: DaemonSettings
) -> tuple[list[float], list[float], bytes]:
    """Change-to-event latencies past the settle window, and the floor measured on the same
    file right before each change."""
    events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
    threading.Thread(target=subscriber, args=(d.socket, events), daemon=True).start()
    time.sleep(0.5)  # the subscription is in place
    latencies: list[float] = []
    floors: list[float] = []
    album = 100
    for round_ in range(settings.latency_rounds):
        while True:
            try:
                new, count = rename_album(data, album, f"Renamed {round_} Ünïcödé & Co")
                break
            except ValueError:
                album += 1
        album += 37
        new = new.replace(b"2026-01-01T00:00:00Z", f"2026-02-{round_ + 1:02d}T00:00:00Z".encode())
        data = new
        floors.append(min(read_floor(d.library) for _ in range(2)))
        written = write_like_music_app(d.library, new)
        arrived: list[float] = []
        deadline = time.monotonic() + 60
        while len(arrived) < count:
            at, event = events.get(timeout=max(0.1, deadline - time.monotonic()))
            if event.get("changed") == ["album"]:
                arrived.append(at)
        latencies.append(max(arrived) - written - settings.settle_seconds)
        time.sleep(1.0)
    return latencies, floors, data


# -- one single-track edit: bytes and CPU


@dataclass
class DaemonEdit:
    cpu_s: float
    wchar: int
    write_bytes: int
    log_bytes: int
    wall_s: float


def measure_edit(d: DaemonProc, pid: int, data: bytes) -> tuple[DaemonEdit, bytes]:
    """Move one track to another album (its old album has an answer per source), and count
    what the daemon wrote from the file's replacement to the end of the periodic checkpoint
    that follows the edit's commits (and the flush_finished event recorded after it)."""
    conn = read_only(d)
    try:
        track_pid, artist, album = conn.execute(
            "SELECT persistent_id, artist, album FROM tracks WHERE artist IS NOT NULL "
            "AND album IS NOT NULL AND artist = album_artist AND rowid % 997 = 300 LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    with MusicdClient(d.socket, timeout=30) as c:
        for answer in album_answers(artist, album):
            c.cache_put(artist, album, answer.source, data=answer.data)
    # Quiet: the answers' commit has been checkpointed and nothing else is pending.
    mark = d.mark()
    d.wait_log("flush_finished", timeout=60, after=mark)
    time.sleep(1.0)
    new = move_track(data, track_pid, " (Deluxe)")
    log_before = d.log_file.stat().st_size
    io0, cpu0 = proc_io(pid), cpu_seconds(pid)
    mark = d.mark()
    written = write_like_music_app(d.library, new)
    invalidated = d.wait_log("cache_invalidated", timeout=120, after=mark)
    assert invalidated["entries"] == len(SOURCES), invalidated
    d.wait_log("flush_finished", timeout=120, after=d.mark())
    wall = time.monotonic() - written
    time.sleep(1.0)  # the flush_finished event's own commit
    io1, cpu1 = proc_io(pid), cpu_seconds(pid)
    edit = DaemonEdit(
        cpu_s=cpu1 - cpu0,
        wchar=io1["wchar"] - io0["wchar"],
        write_bytes=io1["write_bytes"] - io0["write_bytes"],
        log_bytes=d.log_file.stat().st_size - log_before,
        wall_s=wall,
    )
    return edit, new


# -- idle


def poller_cpu(path: Path, seconds: float) -> subprocess.Popen[bytes]:
    """The obvious alternative to a watcher: stat the file once a second."""
    code = (
        "import os, sys, time\n"
        "end = time.monotonic() + float(sys.argv[2])\n"
        "last = None\n"
        "while time.monotonic() < end:\n"
        "    st = os.stat(sys.argv[1])\n"
        "    last = (st.st_mtime_ns, st.st_size)\n"
        "    time.sleep(1)\n"
        "t = os.times()\n"
        "print(t.user + t.system)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE
    )


# -- socket


def socket_load(socket_path: Path, settings: DaemonSettings, op: str, pid: int) -> dict[str, Any]:
    """Rate and latency of `op` round trips, and the daemon's CPU per call (all threads, and
    its event-loop thread alone: what bounds the rate on a machine with a core to spare)."""
    cpu0, loop0 = cpu_seconds(pid), cpu_seconds(pid, pid)
    albums = settings.cache_entries // len(SOURCES)
    processes = 2
    per_process = max(1, settings.socket_clients // processes)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.benchmarks.socket_load",
                str(socket_path),
                str(per_process),
                str(settings.socket_seconds),
                str(albums),
                op,
            ],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        for _ in range(processes)
    ]
    results = [orjson.loads(p.communicate()[0]) for p in procs]
    cpu, loop = cpu_seconds(pid) - cpu0, cpu_seconds(pid, pid) - loop0
    durations = sorted(d for r in results for d in r["us"])
    calls = sum(r["calls"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "rate": calls / seconds,
        "p50_ms": durations[len(durations) // 2] / 1000,
        "p99_ms": durations[int(len(durations) * 0.99)] / 1000,
        "misses": sum(r["misses"] for r in results),
        "clients": processes * per_process,
        "cpu_us": cpu / calls * 1e6,
        "loop_us": loop / calls * 1e6,
    }


def json_cache_lookup(path: Path) -> float:
    """Without a daemon, a tool loads api_cache.json (json module) for each run's lookups."""
    import json

    started = time.perf_counter()
    with path.open("rb") as fh:
        entries = json.load(fh)["entries"]
    index = {(e["artist"], e["album"], e["source"]): e for e in entries}
    assert index
    return time.perf_counter() - started


# -- all of it


@dataclass
class Measured:
    """Everything one size's run measured; `figures()` turns it into table rows."""

    settings: DaemonSettings
    build_s: float = 0.0
    build_rss: float = 0.0
    cold_s: float = 0.0
    first_scan_s: float = 0.0
    idle_cpu: float = 0.0
    poll_cpu: float = 0.0
    rss: float = 0.0
    hwm: float = 0.0
    db_bytes: int = 0
    get: dict[str, Any] = field(default_factory=dict)
    put: dict[str, Any] = field(default_factory=dict)
    json_lookup_s: float = 0.0
    edit: DaemonEdit | None = None  # the edit of median CPU
    edit_cpus: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    # Reading the library file and hashing its bytes, right before each latency round.
    floors: list[float] = field(default_factory=list)
    # VmHWM of the first start (the build of musicd.db from the library).
    build_peak: float = 0.0
    # The daemon's own duration of each scan in the latency rounds (read + diff).
    scan_ms: list[float] = field(default_factory=list)
    plistlib_s: float | None = None
    state_db: EditCost | None = None
    state_json: EditCost | None = None
    json_bytes: int = 0
    json_load: dict[str, float] = field(default_factory=dict)


def bench_daemon(settings: DaemonSettings) -> Measured:
    m = Measured(settings)
    n = settings.tracks
    with scratch() as root:
        data = prepare(root, settings)
        with running_daemon(root, data, settings) as d:
            library = d.library
            timeout = max(120.0, n / 500)
            mark = d.mark()
            started = time.monotonic()
            d.start(wait_ready=False)
            d.wait_log("scan_finished", timeout=timeout, after=mark)
            status_when_serving(d, n, timeout)
            m.build_s = time.monotonic() - started
            m.build_rss = d.rss_kib() / 1024
            m.build_peak = d.peak_rss_kib() / 1024
            assert d.stop(timeout=30)[0] == 0
            settings.timings["daemon first start (build musicd.db)"] = m.build_s

            # Cold start to serving, as after a login: the database is there.
            mark = d.mark()
            started = time.monotonic()
            d.start(wait_ready=False)
            status_when_serving(d, n, timeout)
            m.cold_s = time.monotonic() - started
            scan = d.wait_log("scan_finished", timeout=timeout, after=mark)
            m.first_scan_s = scan["duration_ms"] / 1000
            pid = d.pid
            time.sleep(FLUSH_INTERVAL_SECONDS + 2)  # the start's checkpoint, the collector

            # Idle: CPU over the window, RSS at its end (after start + one scan + idle).
            poller = poller_cpu(library, settings.idle_seconds)
            before = cpu_seconds(pid)
            time.sleep(settings.idle_seconds)
            m.idle_cpu = (cpu_seconds(pid) - before) * 60 / settings.idle_seconds
            m.rss, m.hwm = d.rss_kib() / 1024, d.peak_rss_kib() / 1024
            m.poll_cpu = float(poller.communicate()[0]) * 60 / settings.idle_seconds

            # The CPU figures come in 10 ms clock ticks: the median of a few edits.
            edits = []
            for _ in range(EDIT_ROUNDS):
                edit, data = measure_edit(d, pid, data)
                edits.append(edit)
            m.edit_cpus = [e.cpu_s for e in edits]
            m.edit = sorted(edits, key=lambda e: e.cpu_s)[len(edits) // 2]

            m.get = socket_load(d.socket, settings, "get", pid)
            m.put = socket_load(d.socket, settings, "put", pid)

            before_edit = kept_tracks(library) if settings.plistlib_baseline else {}
            mark = d.mark()
            m.latencies, m.floors, data = measure_latency(d, data, settings)
            m.scan_ms = [e["duration_ms"] for e in d.logs()[mark:] if e["event"] == "scan_finished"]
            if settings.plistlib_baseline:
                m.plistlib_s = seed_parse_and_diff(library, before_edit)
            del before_edit
            assert d.stop(timeout=30)[0] == 0
        m.db_bytes = (root / "state" / "musicd.db").stat().st_size
        m.state_db, m.state_json, m.json_bytes, json_dir = bench_edit_state(root / "state", root)
        m.json_load = orjson.loads(
            subprocess.run(
                [sys.executable, "-m", "tests.benchmarks.json_design", "load", str(json_dir)],
                check=True,
                capture_output=True,
                cwd=REPO,
            ).stdout
        )
        m.json_lookup_s = min(json_cache_lookup(json_dir / "api_cache.json") for _ in range(2))
    return m
