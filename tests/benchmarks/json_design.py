"""A stand-in for the former state design, kept so the benchmarks can measure it beside SQLite.

Before `musicd.db`, the daemon kept its state in whole JSON files and rewrote a file whole
whenever anything in it changed: a flush after a single-track edit wrote

- `snapshot.json`: every track as a compact row, `{"version", "fields", "tracks": [[...]]}`;
- `snapshot.meta.json`: the library stat, scan times, the blake2b-128 hash of snapshot.json;
- `delta.json`: the ids the last scans processed;
- `api_cache.json`: every cached answer, `{"version", "entries": [...]}`, when the edit
  invalidated an album's answers (it did whenever that album had any);

each serialised with orjson and written atomically: a temp file in the same directory, fsync,
rename over the file, fsync of the directory. This module copies only that write path (and the
matching load, for the start-up and memory figures) from the former `daemon/stores/snapshot.py`,
`api_cache.py`, `delta.py` and `_atomic.py`. It models the former design; nothing in the daemon
uses it.

    python -m tests.benchmarks.json_design load STATE_DIR   # prints {"seconds", "rss_mib"}
"""

from __future__ import annotations

import gc
import hashlib
import sys
import time
from collections import deque
from dataclasses import dataclass, make_dataclass
from itertools import repeat, starmap
from operator import attrgetter
from pathlib import Path
from typing import Any, Final, cast

import orjson

from daemon.models import TRACK_FIELDS, Track

# The former design wrote every state file with the same atomic write the launchd plist still uses.
from daemon.stores._atomic import write_atomic
from daemon.stores.cache import CacheEntry

SNAPSHOT_FILE: Final = "snapshot.json"
META_FILE: Final = "snapshot.meta.json"
DELTA_FILE: Final = "delta.json"
CACHE_FILE: Final = "api_cache.json"
_row_of = attrgetter(*TRACK_FIELDS)


def dumps_snapshot(tracks: list[Track]) -> bytes:
    """orjson.dumps({"version", "fields", "tracks": rows}), built in chunks of 4,096 rows as
    the former code did (each chunk let the event loop run in between)."""
    head = orjson.dumps({"version": 1, "fields": list(TRACK_FIELDS), "tracks": []})
    parts = [
        orjson.dumps(list(map(_row_of, tracks[i : i + 4096])))[1:-1]
        for i in range(0, len(tracks), 4096)
    ]
    return head[:-2] + b",".join(parts) + b"]}"


def dumps_cache(entries: list[CacheEntry]) -> bytes:
    """orjson.dumps({"version", "entries"}) in chunks of 2,048; orjson writes the slotted
    dataclasses natively, in field order, as the former cache did."""
    head = orjson.dumps({"version": 1, "entries": []})
    parts = [orjson.dumps(entries[i : i + 2048])[1:-1] for i in range(0, len(entries), 2048)]
    return head[:-2] + b",".join(parts) + b"]}"


@dataclass
class JsonState:
    """The state the former daemon held in memory and wrote whole."""

    state_dir: Path
    tracks: dict[str, Track]
    cache: list[CacheEntry]
    meta: dict[str, Any]
    processed_ids: list[str]

    def flush(self, *, cache_changed: bool) -> int:
        """One flush after an edit: the cache first (when it changed), then the snapshot's meta
        and tracks, then the delta; returns the bytes handed to write()."""
        written = 0
        if cache_changed:
            data = dumps_cache(self.cache)
            write_atomic(self.state_dir / CACHE_FILE, data)
            written += len(data)
        snapshot = dumps_snapshot(list(self.tracks.values()))
        digest = hashlib.blake2b(snapshot, digest_size=16).hexdigest()
        meta = {
            **self.meta,
            "track_count": len(self.tracks),
            "snapshot_hash": digest,
            "saved_at": time.time(),
        }
        for path, data in (
            (self.state_dir / META_FILE, orjson.dumps(meta)),
            (self.state_dir / SNAPSHOT_FILE, snapshot),
            (
                self.state_dir / DELTA_FILE,
                orjson.dumps(
                    {
                        "version": 1,
                        "last_run": time.time(),
                        "tracked_since": self.meta["last_scan"],
                        "processed_ids": self.processed_ids,
                    }
                ),
            ),
        ):
            write_atomic(path, data)
            written += len(data)
        return written


def new_state(state_dir: Path, tracks: dict[str, Track], cache: list[CacheEntry]) -> JsonState:
    meta = {
        "version": 1,
        "library_path": "/Users/bench/Music/Library.xml",
        "library_mtime_ns": time.time_ns(),
        "library_size": 150_000_000,
        "library_inode": 1234,
        "last_scan": time.time(),
        "last_full_scan": time.time(),
        "last_force_scan_time": time.time(),
        "last_seq": 1,
        "pending_invalidations": [],
    }
    return JsonState(state_dir, tracks, cache, meta, [])


# Track's slots in the same order with a plain __init__: the former load built rows as these and
# made them Tracks (a compatible layout), about 2.5 times faster than Track(*row).
_TrackRow = make_dataclass("_TrackRow", [(name, Any) for name in TRACK_FIELDS], slots=True)


def load(state_dir: Path) -> tuple[dict[str, Track], dict[tuple[str, str, str], CacheEntry]]:
    """What the former daemon did with the files at start: decode them and build the objects
    with the cyclic GC paused, then freeze them out of its reach."""
    gc.disable()
    try:
        doc = orjson.loads((state_dir / SNAPSHOT_FILE).read_bytes())
        rows = doc["tracks"]
        built = list(starmap(_TrackRow, rows))
        deque(map(object.__setattr__, built, repeat("__class__"), repeat(Track)), maxlen=0)
        tracks = dict(zip((row[0] for row in rows), cast(list[Track], built), strict=True))
        del doc, rows, built
        orjson.loads((state_dir / META_FILE).read_bytes())
        entries = orjson.loads((state_dir / CACHE_FILE).read_bytes())["entries"]
        cache = {(e["artist"], e["album"], e["source"]): CacheEntry(**e) for e in entries}
        del entries
        gc.freeze()
    finally:
        gc.enable()
    return tracks, cache


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "load":
        print(__doc__, file=sys.stderr)
        return 2
    started = time.perf_counter()
    loaded = load(Path(argv[1]))
    seconds = time.perf_counter() - started
    sys.stdout.buffer.write(orjson.dumps({"seconds": seconds, "rss_mib": _rss_mib()}) + b"\n")
    del loaded
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
