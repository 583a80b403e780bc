"""GenreUpdater's cache pattern through `daemon.compat` beside the original in-process class.

    .venv/bin/python -m tests.benchmarks.compat [--entries 20000] [--repeat 3]

The original's column needs a GenreUpdater checkout (its `src` is loaded with importlib, by
name, from the path given; nothing here imports it otherwise) and Python 3.13 with its
dependencies and this project installed:

    GENREUPDATER_CHECKOUT=/path/to/GenreUpdater /path/to/py313-venv/bin/python \\
        -m tests.benchmarks.compat

Without it the original's column is left empty. Each figure is the median of `--repeat` runs,
both columns measured in the same run on a cache of `--entries` answers:

- start: construct `ApiCacheService` and `initialize()` (the original reads its whole JSON file);
- 300 album lookups in one `gather`, every one a hit (the API orchestrator's pattern);
- write back 30 albums of 10 tracks: per track `invalidate_for_album` then an
  `emit_event(TRACK_MODIFIED)`, 2N invalidations per album (the cache orchestrator's), then
  `shutdown()`, which waits for the scheduled ones;
- a run with nothing to do: start, the 300 lookups, `save_to_disk()`, `shutdown()`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from daemon import compat
from tests.support import daemon_env

LOOKUPS = 300
ALBUMS, TRACKS_PER_ALBUM = 30, 10
SOURCE = "musicbrainz"
# Kept quiet: both classes log each lookup at debug level and each invalidation at info.
QUIET = logging.getLogger("bench.host")
QUIET.setLevel(logging.WARNING)


def album(n: int) -> tuple[str, str]:
    return f"Artist {n % 97}", f"Album {n:06d}"


def load_original(checkout: Path) -> tuple[Any, Any]:
    """(ApiCacheService, CacheEvent factory) of the checkout, loaded by name from its src."""
    sys.path.insert(0, str(checkout / "src"))
    api_cache = importlib.import_module("services.cache.api_cache")
    cache_config = importlib.import_module("services.cache.cache_config")

    def modified(track_id: str, artist: str, album_name: str) -> Any:
        return cache_config.CacheEvent(
            event_type=cache_config.CacheEventType.TRACK_MODIFIED,
            track_id=track_id,
            metadata={"artist": artist, "album": album_name},
        )

    return api_cache.ApiCacheService, modified


def compat_event(track_id: str, artist: str, album_name: str) -> Any:
    return compat.CacheEvent(
        compat.CacheEventType.TRACK_MODIFIED,
        track_id,
        metadata={"artist": artist, "album": album_name},
    )


async def lookups(service: Any) -> None:
    found = await asyncio.gather(
        *(service.get_cached_result(*album(n), SOURCE) for n in range(LOOKUPS))
    )
    assert all(found), "every album was cached"


async def write_back(service: Any, event: Callable[[str, str, str], Any]) -> None:
    for a in range(ALBUMS):
        artist, name = album(LOOKUPS + a)
        for t in range(TRACKS_PER_ALBUM):
            await service.invalidate_for_album(artist, name)
            service.event_manager.emit_event(event(f"{a}-{t}", artist, name))
    await service.shutdown()


Scenario = Callable[
    [Callable[[], Awaitable[Any]], Callable[[str, str, str], Any]], Awaitable[float]
]


async def start(make: Callable[[], Awaitable[Any]], _: Any) -> float:
    began = time.perf_counter()
    service = await make()
    took = time.perf_counter() - began
    await service.shutdown()
    return took


async def gather_lookups(make: Callable[[], Awaitable[Any]], _: Any) -> float:
    service = await make()
    began = time.perf_counter()
    await lookups(service)
    took = time.perf_counter() - began
    await service.shutdown()
    return took


async def written_albums(
    make: Callable[[], Awaitable[Any]], event: Callable[[str, str, str], Any]
) -> float:
    service = await make()
    began = time.perf_counter()
    await write_back(service, event)
    return time.perf_counter() - began


async def nothing_to_do(make: Callable[[], Awaitable[Any]], _: Any) -> float:
    began = time.perf_counter()
    service = await make()
    await lookups(service)
    await service.save_to_disk()
    await service.shutdown()
    return time.perf_counter() - began


SCENARIOS: list[tuple[str, Scenario]] = [
    ("start: construct + initialize()", start),
    (f"{LOOKUPS} album lookups in one gather", gather_lookups),
    (f"write back {ALBUMS} albums x {TRACKS_PER_ALBUM} tracks (2N invalidations)", written_albums),
    ("a run with nothing to do", nothing_to_do),
]


def entries(count: int) -> list[dict[str, Any]]:
    return [
        {
            "artist": album(n)[0],
            "album": album(n)[1],
            "source": SOURCE,
            "success": True,
            "data": {"year": str(1950 + n % 70), "api_response": {"year": 1950 + n % 70}},
        }
        for n in range(count)
    ]


def original_file(directory: Path, seeded: list[dict[str, Any]]) -> SimpleNamespace:
    """The original's config, its cache file holding the same answers."""
    (directory / "cache").mkdir(parents=True, exist_ok=True)
    now = time.time()
    data = {
        compat.hash_api_key(e["artist"], e["album"], e["source"]): {
            "artist": e["artist"],
            "album": e["album"],
            "year": e["data"]["year"],
            "source": e["source"],
            "timestamp": now,
            "ttl": None,
            "metadata": {},
            "api_response": e["data"]["api_response"],
        }
        for e in seeded
    }
    (directory / "cache" / "cache.json").write_text(json.dumps(data), encoding="utf-8")
    return SimpleNamespace(
        logs_base_dir=str(directory),
        logging=SimpleNamespace(api_cache_file="cache/cache.json"),
        caching=SimpleNamespace(negative_result_ttl=30 * 86400),
    )


async def measure(
    scenario: Scenario,
    make: Callable[[], Awaitable[Any]],
    event: Callable[[str, str, str], Any],
    repeat: int,
    reseed: Callable[[], Awaitable[None]],
) -> float:
    runs = []
    for _ in range(repeat):
        await reseed()
        runs.append(await scenario(make, event))
    return statistics.median(runs) * 1000


async def bench(count: int, repeat: int) -> list[tuple[str, float, float | None]]:
    seeded = entries(count)
    checkout = os.environ.get("GENREUPDATER_CHECKOUT")
    results: list[tuple[str, float, float | None]] = []
    with daemon_env(cache={"sources": ["*"]}) as d, tempfile.TemporaryDirectory() as tmp:
        d.start_built()

        async def reseed_daemon() -> None:
            with d.client() as client:
                for at in range(0, len(seeded), 1000):
                    client.cache_put_many(seeded[at : at + 1000])

        async def make_compat() -> Any:
            service = compat.ApiCacheService(None, QUIET, socket_path=d.socket)
            await service.initialize()
            return service

        original: tuple[Any, Any] | None = None
        config = original_file(Path(tmp), seeded) if checkout else None
        if checkout:
            original = load_original(Path(checkout))

        async def make_original() -> Any:
            assert original is not None
            service = original[0](config, QUIET)
            await service.initialize()
            return service

        async def reseed_file() -> None:
            original_file(Path(tmp), seeded)

        for name, scenario in SCENARIOS:
            ours = await measure(scenario, make_compat, compat_event, repeat, reseed_daemon)
            theirs = None
            if original is not None:
                theirs = await measure(scenario, make_original, original[1], repeat, reseed_file)
            results.append((name, ours, theirs))
        d.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.compat")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"cache of {args.entries:,} answers; median of {args.repeat} runs; milliseconds")
    print(f"{'':64} {'compat':>10} {'original':>10}")
    for name, ours, theirs in asyncio.run(bench(args.entries, args.repeat)):
        other = "-" if theirs is None else f"{theirs:,.1f}"
        print(f"{name:64} {ours:>10,.1f} {other:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
