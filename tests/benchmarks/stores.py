"""In-process benchmarks of the state database, each beside the former whole-file design.

- the state cost of one single-track edit: the commits the daemon makes for it (scan started;
  the event with the scan's metadata; the snapshot merge; the cache invalidation; the periodic
  checkpoint; the flush_finished event), made here with the daemon's own store functions on a
  copy of a real daemon's database, against `json_design.JsonState.flush`;
- invalidating 1,000 albums in a 1M-row `api_cache` table, against the naive scan.

Each function returns `Figure`s holding musicd's number and the baseline's, measured in the same
run on the same data.
"""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from daemon.events import FLUSH_FINISHED, SCAN_FINISHED, SCAN_STARTED, ObserverEvent, TrackModified
from daemon.journal import invalidator, merger
from daemon.journal.follow import apply_round
from daemon.journal.recorder import ScanRecord, _record
from daemon.library import FileStat
from daemon.models import album_key, normalize_name
from daemon.stores import cache, tracks
from daemon.stores.database import checkpoint, open_database
from tests.benchmarks import json_design
from tests.support import SOURCES, short_tempdir

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    """One row of the table: musicd's value, the baseline's, and how to read them."""

    name: str
    unit: str
    musicd: float
    baseline: float | None
    baseline_name: str
    target: str
    met: bool | None
    # "x faster" figures: ratio = baseline / musicd; otherwise no ratio.
    ratio: float | None = None
    note: str = ""


@contextmanager
def scratch(prefix: str = "musicd-bench-") -> Iterator[Path]:
    root = short_tempdir(prefix)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process (or of one of its threads), in seconds."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_io(pid: int | str = "self") -> dict[str, int]:
    """/proc/<pid>/io: wchar counts every byte handed to write()/pwrite()/send() (files,
    sockets, the log); write_bytes counts what the process made the kernel send to storage
    (page-cache pages it dirtied, 4 KiB each; a page written twice before writeback counts once)."""
    values = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        values[key] = int(value)
    return values


# -- synthetic cache contents


def cache_entry(album: int, source: str) -> dict[str, Any]:
    return {
        "artist": f"Artist {album % 4000}",
        "album": f"Album {album:07d} Sweet Dance",
        "source": source,
        "success": True,
        "data": {"year": 1990 + album % 30, "genre": "Rock", "id": f"mbid-{album}-{source}"},
        "metadata": {"fetched_by": "bench"},
        "created_at": 1_780_000_000.0 + album,
        "expires_at": None,
    }


def cache_entries(n: int) -> list[dict[str, Any]]:
    """`n` answers: albums with one answer per source."""
    return [cache_entry(i // len(SOURCES), SOURCES[i % len(SOURCES)]) for i in range(n)]


def as_result(e: dict[str, Any]) -> cache.CacheEntry:
    return cache.CacheEntry(
        e["artist"],
        e["album"],
        e["source"],
        e["success"],
        e["data"],
        e["metadata"],
        e["created_at"],
        e["expires_at"],
    )


def all_cache_rows(conn: sqlite3.Connection) -> list[cache.CacheEntry]:
    rows = conn.execute(
        "SELECT artist, album, source, success, data, metadata, created_at, expires_at "
        "FROM api_cache"
    )
    return [
        cache.CacheEntry(
            a, b, s, bool(ok), orjson.loads(d) if d is not None else None, orjson.loads(m), c, x
        )
        for a, b, s, ok, d, m, c, x in rows
    ]


# -- 1. the state cost of one single-track edit


@dataclass
class EditCost:
    cpu_s: float
    wchar: int
    write_bytes: int


def _measure(action: Callable[[], object]) -> EditCost:
    gc.collect()
    io0, cpu0 = proc_io(), time.thread_time()
    action()
    cpu, io1 = time.thread_time() - cpu0, proc_io()
    return EditCost(cpu, io1["wchar"] - io0["wchar"], io1["write_bytes"] - io0["write_bytes"])


def edit_candidates(conn: sqlite3.Connection, n: int) -> list[tuple[str, str, str]]:
    """(persistent id, artist, album) of `n` tracks spread over the library."""
    rows = conn.execute(
        "SELECT persistent_id, artist, album FROM tracks WHERE artist IS NOT NULL "
        "AND album IS NOT NULL AND artist = album_artist AND rowid % 997 = 500 LIMIT ?",
        (n,),
    ).fetchall()
    assert len(rows) == n, rows
    return [(str(p), str(a), str(b)) for p, a, b in rows]


def album_answers(artist: str, album: str) -> list[cache.CacheEntry]:
    """One answer per source for this album, as a lookup tool stores them."""
    return [
        replace(as_result(cache_entry(0, source)), artist=artist, album=album) for source in SOURCES
    ]


def _db_edit(conn: sqlite3.Connection, path: Path, pid: str, round_: int) -> None:
    """The daemon's transactions for one track moved to another album, one commit each as
    the daemon makes them (the merger's and the invalidator's rounds may share one)."""
    old = tracks.get(conn, pid)
    assert old is not None and old.album is not None
    new = replace(old, album=f"{old.album} (edit {round_})")

    def commit(fn: Callable[[sqlite3.Connection], object]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        fn(conn)
        conn.execute("COMMIT")

    stat = FileStat(time.time_ns(), 150_000_000 + round_, 1234)
    scan = ScanRecord(stat, False, time.time(), "/Users/bench/Music/Library.xml")
    commit(lambda c: _record(c, [ObserverEvent(SCAN_STARTED, {"reason": "watch"})], None))
    event = TrackModified(old, new, ("album",))
    finished = ObserverEvent(SCAN_FINISHED, {"duration_ms": 300.0, "modified": 1})
    commit(lambda c: _record(c, [event, finished], scan))
    commit(lambda c: apply_round(c, merger.CONSUMER, merger.merge))
    commit(lambda c: apply_round(c, invalidator.CONSUMER, invalidator.invalidate))
    checkpoint(conn, path)
    commit(lambda c: _record(c, [ObserverEvent(FLUSH_FINISHED, {"reason": "interval"})], None))


def bench_edit_state(state_dir: Path, work: Path) -> tuple[EditCost, EditCost, int, Path]:
    """(SQLite, whole files, bytes of the JSON files, their directory) for one track moved to
    another album whose old album had an answer per source: on a copy of a daemon's (closed)
    database, then on the same tracks and answers written as the former design's files."""
    repeat = 3
    copy = work / "edit-db"
    copy.mkdir()
    shutil.copy(state_dir / "musicd.db", copy / "musicd.db")
    db = open_database(copy)
    try:
        conn = db.write_conn
        edits = edit_candidates(conn, repeat)
        ours = []
        for i, (pid, artist, album) in enumerate(edits):
            # Each edit starts from a checkpointed state with the album's answers cached.
            conn.execute("BEGIN IMMEDIATE")
            cache.put_many(conn, album_answers(artist, album))
            conn.execute("COMMIT")
            checkpoint(conn, db.path)
            ours.append(_measure(partial(_db_edit, conn, db.path, pid, i)))
        all_tracks = {t.persistent_id: t for t in tracks.iterate(conn)}
        entries = all_cache_rows(conn)
    finally:
        db.close()
    shutil.rmtree(copy)
    jdir = work / "json-state"
    jdir.mkdir()
    state = json_design.new_state(jdir, all_tracks, entries)
    state.processed_ids = [pid for pid, _, _ in edits]
    state.flush(cache_changed=True)  # the files exist, as in a running daemon
    size = sum(p.stat().st_size for p in jdir.iterdir())
    theirs = []
    for i, (pid, _, _) in enumerate(edits):
        old = state.tracks[pid]
        state.tracks[pid] = replace(old, album=f"{old.album} (edit {i})")
        theirs.append(_measure(partial(state.flush, cache_changed=True)))
    return _median(ours), _median(theirs), size, jdir


def _median(costs: list[EditCost]) -> EditCost:
    return EditCost(
        statistics.median(c.cpu_s for c in costs),
        int(statistics.median(c.wchar for c in costs)),
        int(statistics.median(c.write_bytes for c in costs)),
    )


# -- 2. album invalidation


def seed_invalidate_for_album(entries: dict[str, dict[str, Any]], artist: str, album: str) -> int:
    """The naive way: scan every entry, comparing normalised names."""
    want = (normalize_name(artist), normalize_name(album))
    stale = [
        key
        for key, e in entries.items()
        if normalize_name(e["artist"]) == want[0] and normalize_name(e["album"]) == want[1]
    ]
    for key in stale:
        del entries[key]
    return len(stale)


def bench_invalidation(entries: int, albums: int, baseline_albums: int) -> Figure:
    n_albums = entries // len(SOURCES)
    step = max(1, n_albums // albums)
    targets = [cache_entry(a, SOURCES[0]) for a in range(0, n_albums, step)][:albums]
    rows = cache_entries(entries)
    with scratch() as root:
        db = open_database(root)
        try:
            conn = db.write_conn
            conn.execute("BEGIN IMMEDIATE")
            cache.put_many(conn, map(as_result, rows))
            conn.execute("COMMIT")
            checkpoint(conn, db.path, truncate=True)
            assert conn.execute("SELECT count(*) FROM api_cache").fetchone()[0] == entries
            keys = [album_key(t["artist"], t["album"]) for t in targets]
            gc.collect()
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            removed = cache.invalidate_keys(conn, keys)
            conn.execute("COMMIT")
            ours_s = time.perf_counter() - started
            assert removed == len(targets) * len(SOURCES), removed
        finally:
            db.close()
    # The naive flat dict of entries, every one a JSON object.
    flat = {f"{e['artist']}|{e['album']}|{e['source']}": e for e in rows}
    del rows
    started = time.perf_counter()
    sample = targets[:baseline_albums]
    dropped = sum(seed_invalidate_for_album(flat, t["artist"], t["album"]) for t in sample)
    per_album = (time.perf_counter() - started) / len(sample)
    assert dropped == len(sample) * len(SOURCES)
    seed_s = per_album * len(targets)
    ratio = seed_s / ours_s
    return Figure(
        f"invalidate {len(targets):,} albums, {entries:,}-row cache table",
        "s",
        ours_s,
        seed_s,
        "full scan comparing normalised names per album",
        ">= 1000x faster",
        ratio >= 1000,
        ratio,
        note=(
            f"`cache.invalidate_keys` + COMMIT, one transaction; baseline timed on "
            f"{len(sample)} albums, times {len(targets)}"
        ),
    )
