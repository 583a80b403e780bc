"""Benchmarks of the real daemon subprocess: change-to-event latency, idle cost, socket.

One daemon runs on a generated library and a pre-filled API cache. It is started once to build
its snapshot, then restarted, as after a login: the figures are those of a warm start.
"""

from __future__ import annotations

import os
import plistlib
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from daemon.client import MusicdClient
from tests.benchmarks.generate import generate_library, rename_album
from tests.benchmarks.stores import Figure, scratch, write_cache_file
from tests.support import REPO, DaemonProc, write_config

CLK_TCK = os.sysconf("SC_CLK_TCK")
KEPT = (
    "Persistent ID",
    "Name",
    "Artist",
    "Album Artist",
    "Album",
    "Genre",
    "Year",
    "Compilation",
    "Disc Number",
    "Track Number",
    "Date Added",
    "Date Modified",
    "Kind",
    "Track Type",
    "Disabled",
)


@dataclass
class DaemonSettings:
    tracks: int
    cache_entries: int
    idle_seconds: float
    socket_seconds: float
    socket_clients: int
    latency_rounds: int
    settle_seconds: float


# -- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


# -- the daemon


@contextmanager
def running_daemon(root: Path, library: Path, settings: DaemonSettings) -> Iterator[DaemonProc]:
    config = write_config(
        root,
        library,
        library={"settle_seconds": settings.settle_seconds, "verify_seconds": 60},
        state={"flush_interval_seconds": 30},
        log={"level": os.environ.get("BENCH_LOG_LEVEL", "info")},
    )
    d = DaemonProc(
        root=root,
        config_path=config,
        library=library,
        state_dir=root / "state",
        socket=root / "d.sock",
        log_file=root / "musicd.log",
    )
    try:
        yield d
    finally:
        d.kill()


def wait_started_and_scanned(d: DaemonProc, timeout: float) -> None:
    mark = d.mark()
    d.start(wait_ready=False)
    d.wait_log("daemon_started", timeout=timeout, after=mark)
    d.wait_log("scan_finished", timeout=timeout, after=mark)


def prepare(root: Path, settings: DaemonSettings) -> tuple[Path, bytes]:
    library = root / "lib" / "Library.xml"
    library.parent.mkdir()
    data = generate_library(settings.tracks)
    library.write_bytes(data)
    state = root / "state"
    state.mkdir(mode=0o700)
    write_cache_file(state / "api_cache.json", settings.cache_entries)
    return library, data


# -- 1. change-to-event latency


def seed_parse_and_diff(path: Path, previous: dict[str, dict[str, Any]]) -> float:
    """The obvious alternative: plistlib the whole file, then diff dicts of the kept keys."""
    started = time.perf_counter()
    with path.open("rb") as fh:
        doc = plistlib.load(fh)
    current = {t["Persistent ID"]: {k: t.get(k) for k in KEPT} for t in doc["Tracks"].values()}
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
    tmp = path.with_name(f".{path.name}.saving")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return time.monotonic()


def subscriber(socket_path: Path, events: queue.Queue[tuple[float, dict[str, Any]]]) -> None:
    with MusicdClient(socket_path, timeout=None) as c:
        for event in c.subscribe(["track_modified"]):
            events.put((time.monotonic(), event))


def measure_latency(
    d: DaemonProc, data: bytes, settings: DaemonSettings
) -> tuple[list[float], bytes]:
    events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
    threading.Thread(target=subscriber, args=(d.socket, events), daemon=True).start()
    time.sleep(0.5)  # the subscription is in place
    latencies: list[float] = []
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
        written = write_like_music_app(d.library, new)
        arrived: list[float] = []
        deadline = time.monotonic() + 60
        while len(arrived) < count:
            at, event = events.get(timeout=max(0.1, deadline - time.monotonic()))
            if event.get("changed") == ["album"]:
                arrived.append(at)
        latencies.append(max(arrived) - written - settings.settle_seconds)
        time.sleep(1.0)
    return latencies, data


# -- 4. idle


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


def plistlib_rss(path: Path) -> float:
    """RSS of a process that holds the library as plistlib parsed it (the in-memory alternative)."""
    code = (
        "import plistlib, sys\n"
        "doc = plistlib.load(open(sys.argv[1], 'rb'))\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'):\n"
        "        print(int(line.split()[1]) / 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], check=True, capture_output=True
    ).stdout
    return float(out)


# -- 5. socket


def socket_load(socket_path: Path, settings: DaemonSettings) -> dict[str, Any]:
    albums = settings.cache_entries // 4
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
            ],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        for _ in range(processes)
    ]
    results = [orjson.loads(p.communicate()[0]) for p in procs]
    durations = sorted(d for r in results for d in r["us"])
    calls = sum(r["calls"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "rate": calls / seconds,
        "p50_ms": durations[len(durations) // 2] / 1000,
        "p99_ms": durations[int(len(durations) * 0.99)] / 1000,
        "misses": sum(r["misses"] for r in results),
        "clients": processes * per_process,
    }


def seed_cache_lookup(path: Path) -> float:
    """Without a daemon, a tool loads api_cache.json (json module) for each run's lookups."""
    import json

    started = time.perf_counter()
    with path.open("rb") as fh:
        entries = json.load(fh)["entries"]
    index = {(e["artist"], e["album"], e["source"]): e for e in entries}
    assert index
    return time.perf_counter() - started


# -- all of it


def bench_daemon(settings: DaemonSettings) -> list[Figure]:
    figures: list[Figure] = []
    with scratch() as root:
        library, data = prepare(root, settings)
        cache_copy = root / "api_cache.seed.json"
        cache_copy.write_bytes((root / "state" / "api_cache.json").read_bytes())
        with running_daemon(root, library, settings) as d:
            startup = max(120.0, settings.tracks / 1000)
            wait_started_and_scanned(d, startup)  # first start: builds the snapshot
            assert d.proc is not None
            time.sleep(1)
            rss_first, _ = memory_mib(d.proc.pid)
            assert d.stop()[0] == 0
            wait_started_and_scanned(d, startup)  # warm start, as after a login
            assert d.proc is not None
            pid = d.proc.pid
            time.sleep(3)  # the reconciliation's flush and the collector settle

            # 4. idle: CPU over the idle window, RSS at its end.
            poller = poller_cpu(library, settings.idle_seconds)
            rss_baseline = plistlib_rss(library)
            before = cpu_seconds(pid)
            time.sleep(settings.idle_seconds)
            idle_cpu = (cpu_seconds(pid) - before) * 60 / settings.idle_seconds
            rss, _ = memory_mib(pid)
            poll_cpu = float(poller.communicate()[0]) * 60 / settings.idle_seconds
            figures.append(
                Figure(
                    "idle CPU per minute, no library changes",
                    "s",
                    idle_cpu,
                    poll_cpu,
                    "stat() the file once a second",
                    "< 0.1 s",
                    idle_cpu < 0.1,
                    note=f"measured over {settings.idle_seconds:g} s",
                )
            )
            figures.append(
                Figure(
                    f"RSS, {settings.tracks:,} tracks + {settings.cache_entries:,} entries",
                    "MiB",
                    rss,
                    rss_baseline,
                    "a process holding the plistlib parse",
                    "< 300 MiB",
                    rss < 300,
                    note=(
                        f"after a restart (snapshot loaded from disk); {rss_first:.0f} MiB "
                        "after the first start, which built the snapshot"
                    ),
                )
            )

            # 5. socket
            sock = socket_load(d.socket, settings)
            seed_lookup = min(seed_cache_lookup(cache_copy) for _ in range(2))
            figures.append(
                Figure(
                    f"cache.get round trips/s, {sock['clients']} clients",
                    "/s",
                    sock["rate"],
                    1 / seed_lookup,
                    "each lookup loads api_cache.json (json)",
                    ">= 10,000/s",
                    sock["rate"] >= 10_000,
                    ratio=sock["rate"] * seed_lookup,
                    note=f"p50 {sock['p50_ms']:.2f} ms; misses {sock['misses']}",
                )
            )
            figures.append(
                Figure(
                    f"cache.get p99 latency, {sock['clients']} clients",
                    "ms",
                    sock["p99_ms"],
                    seed_lookup * 1000,
                    "each lookup loads api_cache.json (json)",
                    "< 5 ms",
                    sock["p99_ms"] < 5,
                )
            )

            # 1. change-to-event latency
            before_edit = kept_tracks(library)
            latencies, data = measure_latency(d, data, settings)
            rss_after, hwm = memory_mib(pid)
            seed_s = seed_parse_and_diff(library, before_edit)
            ours = statistics.median(latencies)
            ratio = seed_s / ours
            figures.insert(
                0,
                Figure(
                    f"change-to-event latency, {settings.tracks:,} tracks",
                    "s",
                    ours,
                    seed_s,
                    "plistlib full parse + dict diff",
                    "< 0.5 s and >= 20x faster",
                    ours < 0.5 and ratio >= 20,
                    ratio,
                    note=(
                        f"median of {len(latencies)} album renames (worst "
                        f"{max(latencies):.3f} s), settle window subtracted; daemon RSS "
                        f"after them {rss_after:.0f} MiB, peak {hwm:.0f} MiB"
                    ),
                ),
            )
            assert d.stop()[0] == 0

            # The same warm start with reader.adopt(snapshot tracks) wired in (see
            # adopt_launcher.py): what that one line in app._serve saves.
            mark = d.mark()
            with (root / "stderr.txt").open("ab") as err:
                launcher = [sys.executable, "-m", "tests.benchmarks.adopt_launcher", "run"]
                d.proc = subprocess.Popen(
                    [*launcher, "--config", str(d.config_path)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    cwd=REPO,
                )
            d.wait_log("scan_finished", timeout=startup, after=mark)
            time.sleep(3)
            rss_adopt, _ = memory_mib(d.proc.pid)
            assert d.stop()[0] == 0
    for f in figures:
        if f.name.startswith("RSS"):
            f.note += f"; {rss_adopt:.0f} MiB with reader.adopt(snapshot) wired in"
    return figures
