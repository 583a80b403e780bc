"""In-process benchmarks of the stores: cold snapshot load, album invalidation, flush stall.

Each function returns a `Figure` holding musicd's number and the baseline's, measured here in
the same run on the same data.
"""

from __future__ import annotations

import gc
import gzip
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
from pydantic import BaseModel

from daemon.config import Config
from daemon.events import Sequencer
from daemon.hub import EventHub
from daemon.library import FileStat
from daemon.models import Track, normalize_name
from daemon.stores.api_cache import CACHE_VERSION, ApiCache
from daemon.stores.delta import DeltaState
from daemon.stores.snapshot import SnapshotStore

SOURCES = ("musicbrainz", "discogs", "lastfm", "spotify")


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
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls. The result is freed outside the timing, and a
    collection runs first, so no call pays for another's garbage."""
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
        del result
    return statistics.median(times)


# -- synthetic store contents


def synthetic_tracks(n: int) -> dict[str, Track]:
    tracks: dict[str, Track] = {}
    for i in range(n):
        album = i // 12
        pid = f"{0x3D4A155AF6680000 + i:016X}"
        tracks[pid] = Track(
            persistent_id=pid,
            name=f"Song {i} Heart Fire",
            artist=f"Artist {album % 4000}" if i % 50 else None,
            album_artist=f"Artist {album % 4000}",
            album=f"Album {album:06d} Sweet Dance" if i % 47 else None,
            genre="Rock",
            year=1990 + album % 30,
            compilation=False,
            disc_number=1,
            track_number=i % 12 + 1,
            date_added="2016-04-20T01:08:45Z",
            date_modified="2023-12-26T02:15:02Z",
            kind="Apple Music AAC audio file",
            track_type="File",
            disabled=False,
        )
    return tracks


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


def write_cache_file(path: Path, entries: int) -> None:
    """An api_cache.json with `entries` answers: albums with one answer per source."""
    rows = [cache_entry(i // len(SOURCES), SOURCES[i % len(SOURCES)]) for i in range(entries)]
    path.write_bytes(orjson.dumps({"version": CACHE_VERSION, "entries": rows}))


def filled_snapshot(state_dir: Path, n: int) -> SnapshotStore:
    store = SnapshotStore(state_dir)
    store.replace_all(synthetic_tracks(n))
    store.note_scan(FileStat(1, 1, 1), "/tmp/Library.xml", full=True, seq=1, now=time.time())
    store.capture().write()
    return store


# -- 2. cold snapshot load


class SeedTrack(BaseModel):
    """One track as the seed project validated it, one model per track."""

    persistent_id: str
    name: str | None = None
    artist: str | None = None
    album_artist: str | None = None
    album: str | None = None
    genre: str | None = None
    year: int | None = None
    compilation: bool = False
    disc_number: int | None = None
    track_number: int | None = None
    date_added: str | None = None
    date_modified: str | None = None
    kind: str | None = None
    track_type: str | None = None
    disabled: bool = False


def seed_snapshot_load(path: Path) -> dict[str, SeedTrack]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return {t["persistent_id"]: SeedTrack.model_validate(t) for t in data["tracks"]}


def bench_cold_load(n: int, repeat: int) -> Figure:
    with scratch() as root:
        store = filled_snapshot(root, n)
        seed_file = root / "seed_snapshot.json.gz"
        with gzip.open(seed_file, "wt", encoding="utf-8") as fh:
            json.dump({"tracks": [t.to_dict() for t in store.tracks.values()]}, fh)
        del store

        def ours() -> SnapshotStore:
            loaded = SnapshotStore(root)
            assert loaded.load() and len(loaded) == n
            return loaded

        ours_s = timed(ours, repeat)
        seed_s = timed(lambda: seed_snapshot_load(seed_file), repeat)
    ratio = seed_s / ours_s
    return Figure(
        f"cold snapshot load, {n:,} tracks",
        "s",
        ours_s,
        seed_s,
        "gzip JSON + json + one pydantic model per track",
        ">= 4x faster",
        ratio >= 4,
        ratio,
    )


# -- 3. album invalidation


def seed_invalidate_for_album(entries: dict[str, dict[str, Any]], artist: str, album: str) -> int:
    """The seed's way: scan every entry, comparing normalised names."""
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
    with scratch() as root:
        path = root / "api_cache.json"
        write_cache_file(path, entries)
        cache = ApiCache(path, failed_ttl_seconds=3600)
        cache.load()
        assert len(cache) == entries
        gc.collect()
        started = time.perf_counter()
        removed = sum(cache.invalidate_album(t["artist"], t["album"]) for t in targets)
        ours_s = time.perf_counter() - started
        assert removed == len(targets) * len(SOURCES), removed
        del cache
        gc.collect()
        # The seed's flat dict of entries, every one a JSON object, as it loaded them.
        flat = {
            f"{e['artist']}|{e['album']}|{e['source']}": e
            for e in orjson.loads(path.read_bytes())["entries"]
        }
    # Every name once through the normaliser's cache, as a long-running seed would have.
    started = time.perf_counter()
    sample = targets[:baseline_albums]
    dropped = sum(seed_invalidate_for_album(flat, t["artist"], t["album"]) for t in sample)
    per_album = (time.perf_counter() - started) / len(sample)
    assert dropped == len(sample) * len(SOURCES)
    seed_s = per_album * len(targets)
    ratio = seed_s / ours_s
    return Figure(
        f"invalidate {len(targets):,} albums, {entries:,}-entry cache",
        "s",
        ours_s,
        seed_s,
        "full scan comparing normalised names per album",
        ">= 1000x faster",
        ratio >= 1000,
        ratio,
        note=f"baseline timed on {len(sample)} albums, times {len(targets)}",
    )


# -- 6. event-loop stall during a flush


async def _max_stall(action: Callable[[], Any]) -> float:
    """The longest gap between ticks of a 1 ms ticker while `action` runs."""
    longest = 0.0
    running = True

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while running:
            await anyio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.05)
        longest = 0.0
        await action()
        running = False
    return longest


def _flush_config(root: Path) -> Config:
    return Config.model_validate(
        {
            "library": {"path": str(root / "Library.xml")},
            "state": {"dir": str(root / "state")},
            "control": {"socket": str(root / "d.sock")},
            "log": {"file": str(root / "musicd.log")},
        }
    )


def bench_flush_stall(n: int, cache_entries: int, repeat: int) -> Figure:
    from daemon.app import Daemon

    with scratch() as root:
        config = _flush_config(root)
        state = config.state.dir
        state.mkdir()
        filled_snapshot(state, n)
        write_cache_file(state / "api_cache.json", cache_entries)
        gc.collect()
        # Loaded from disk as the daemon does; the reader's own copy of the tracks (the
        # scanner's baseline) lives next to them.
        snapshot = SnapshotStore(state)
        snapshot.load()
        cache = ApiCache(state / "api_cache.json", failed_ttl_seconds=3600)
        cache.load()
        baseline_tracks = synthetic_tracks(n)
        daemon = Daemon(
            config=config,
            snapshot=snapshot,
            cache=cache,
            delta=DeltaState(state),
            hub=EventHub(),
            sequencer=Sequencer(),
        )
        tracks = list(snapshot.tracks.values())

        def dirty(i: int) -> None:
            # One changed track and one new answer: both big files must be written again.
            t = tracks[i]
            snapshot.put(Track(t.persistent_id, name=f"{t.name} ({i})", album=t.album))
            cache.put(f"Artist {i}", f"New Album {i}", "musicbrainz", success=True, data={})

        async def ours_once(i: int) -> float:
            dirty(i)

            async def flush() -> None:
                assert await daemon.flush("bench")

            return await _max_stall(flush)

        async def baseline_once(i: int) -> float:
            dirty(i)

            async def flush_on_loop() -> None:
                for save in (cache.capture(), snapshot.capture()):
                    save.write()

            return await _max_stall(flush_on_loop)

        full_collections = 0

        def count(phase: str, info: dict[str, Any]) -> None:
            nonlocal full_collections
            full_collections += phase == "start" and info["generation"] == 2

        async def both() -> tuple[float, float]:
            gc.callbacks.append(count)
            try:
                ours = [await ours_once(i) for i in range(repeat)]
            finally:
                gc.callbacks.remove(count)
            seed = [await baseline_once(repeat + i) for i in range(repeat)]
            return max(ours), statistics.median(seed)

        ours_s, seed_s = anyio.run(both)
        del baseline_tracks
    return Figure(
        f"event-loop stall during a flush, {n:,} tracks + {cache_entries:,} entries",
        "ms",
        ours_s * 1000,
        seed_s * 1000,
        "serialise + write on the loop",
        "< 50 ms",
        ours_s < 0.050,
        note=(
            f"worst of {repeat} flushes (baseline: median); "
            f"{full_collections} full GC(s) during ours"
        ),
    )
