"""An event storm: thousands of writes to the library per second for several seconds.

The daemon must coalesce them into a bounded number of scans, keep its memory bounded, and end
in exactly the state of the last version written.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from tests.reliability.conftest import Report
from tests.reliability.harness import (
    NO_INOTIFY,
    SOURCES,
    faulty_env,
    no_inotify_supported,
    seed_answers,
    settle,
    soak_factor,
)
from tests.support.common import wait_for
from tests.support.library import SynthLibrary, album_of, artist_of, write_library

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + 30 * soak_factor())]

N_TRACKS = 250
STORM_SECONDS = 4.0 * min(soak_factor(), 5)
SETTLE_MAX = 1.5
VERSIONS = 40
# Albums 0-9 are edited by intermediate versions; album 10 only by the last one; the rest never.
FINAL_ALBUM = 10
SEED = 7


def versions(lib: SynthLibrary, rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    for v in range(VERSIONS):
        edit = lib.copy()
        for pid in rng.sample(sorted(edit.tracks), 20):
            edit.tracks[pid]["Genre"] = f"Storm {v}"
        a = rng.randrange(10)
        for pid in edit.album_pids(artist_of(a), album_of(a)):
            edit.tracks[pid]["Album"] = f"{album_of(a)} (take {v})"
        out.append(edit.render())
    return out


def test_event_storm_bounded_scans_bounded_memory_exact_final_state(report: Report) -> None:
    rng = random.Random(SEED)
    lib = SynthLibrary.generate(N_TRACKS)
    intermediate = versions(lib, rng)
    final = lib.copy()
    for pid in final.album_pids(artist_of(FINAL_ALBUM), album_of(FINAL_ALBUM)):
        final.tracks[pid]["Album"] = "The Last Word"
    for pid in list(final.tracks)[:5]:
        final.tracks[pid]["Genre"] = "Final"
    final_bytes = final.render()
    tally = report.case("event_storm")
    with faulty_env(
        lib.render(),
        library={"settle_seconds": 0.1, "settle_max_seconds": SETTLE_MAX},
        state={"flush_interval_seconds": 0.2},
    ) as d:
        seed_answers(d, N_TRACKS // 10)
        d.start()
        d.wait_log("flush_finished")
        rss_before = d.rss_kib()
        mark = d.mark()
        writes = storm(d.library, intermediate, final_bytes, rng)
        tally.tried += writes
        # The last write is followed by one settled scan of the final version.
        with d.client() as c:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                track = c.track(next(iter(final.tracks)))
                if track is not None and track["genre"] == "Final":
                    break
                time.sleep(0.1)
            settle(c)
            status = c.status()
        peak_growth_mib = (d.peak_rss_kib() - rss_before) / 1024
        scans = d.events_since(mark, "scan_finished")
        failed = d.events_since(mark, "library_unreadable", "library_busy")
        retried = d.events_since(mark, "library_changed_during_read")
        tally.notes = {
            "writes_per_second": round(writes / STORM_SECONDS),
            "scans": len(scans),
            "failed_reads": len(failed),
            "read_retries": len(retried),
            "peak_rss_growth_mib": round(peak_growth_mib, 1),
        }
        # Bounded: one scan per settle_max window of the storm, plus the final one and slack.
        assert len(scans) + len(failed) <= STORM_SECONDS / SETTLE_MAX + 4, tally.notes
        assert peak_growth_mib < 64, tally.notes
        assert status["library"]["reader_error"] is None
        # Exactly the final version.
        snapshot = d.snapshot_tracks()
        wrong = [pid for pid, row in final.expected_rows().items() if snapshot.get(pid) != row]
        assert not wrong and len(snapshot) == N_TRACKS, wrong[:5]
        cached = {(e["album"], e["source"]) for e in d.cache_entries()}
        assert not any(album == album_of(FINAL_ALBUM) for album, _ in cached)
        untouched = list(range(FINAL_ALBUM + 1, N_TRACKS // 10))
        lost = [a for a in untouched for s in SOURCES if (album_of(a), s) not in cached]
        tally.lost += len(lost)
        assert not lost, lost[:5]
        assert d.stop()[0] == 0
        tally.survived += writes


def storm(
    path: os.PathLike[str],
    variants: list[bytes],
    final: bytes | None,
    rng: random.Random,
    *,
    stop: threading.Event | None = None,
) -> int:
    """Write versions as fast as possible (in place and by rename) for STORM_SECONDS (or
    until `stop`), then `final` by rename."""
    writes = 0
    tmp = f"{os.fspath(path)}.storm-tmp"
    end = time.monotonic() + (STORM_SECONDS if stop is None else 120)
    while time.monotonic() < end and not (stop is not None and stop.is_set()):
        data = variants[writes % len(variants)]
        if writes % 4 == 3:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        writes += 1
    if final is None:
        return writes
    with open(tmp, "wb") as fh:
        fh.write(final)
    os.replace(tmp, path)
    return writes + 1


def test_storm_without_a_watcher_still_ends_in_the_final_state(report: Report) -> None:
    """No inotify (the user's instances used up): the stat safety net alone finds the storm's
    versions, and the last one."""
    if not no_inotify_supported():
        pytest.skip("cannot make a user namespace without inotify here")
    rng = random.Random(SEED + 1)
    lib = SynthLibrary.generate(N_TRACKS)
    intermediate = versions(lib, rng)
    final = lib.copy()
    first = next(iter(final.tracks))
    final.tracks[first]["Genre"] = "Final"
    tally = report.case("event_storm_without_watcher")
    with faulty_env(
        lib.render(),
        library={"settle_seconds": 0.05, "settle_max_seconds": SETTLE_MAX, "verify_seconds": 0.2},
    ) as d:
        d.wrapper = NO_INOTIFY
        d.start()
        d.wait_log("watch_failed")
        d.wait_log("flush_finished")
        mark = d.mark()
        stop = threading.Event()
        writer = threading.Thread(
            target=storm, args=(d.library, intermediate, None, rng), kwargs={"stop": stop}
        )
        writer.start()
        time.sleep(STORM_SECONDS / 2)
        stop.set()
        writer.join()
        write_library(d.library, final.render())
        tally.tried += 1
        with d.client() as c:
            wait_for(
                lambda: (c.track(first) or {}).get("genre") == "Final",
                timeout=15,
                what="the final version read by the safety net",
            )
            settle(c)
        assert d.events_since(mark, "library_changed_unnoticed")
        snapshot = d.snapshot_tracks()
        wrong = [pid for pid, row in final.expected_rows().items() if snapshot.get(pid) != row]
        assert not wrong, wrong[:5]
        tally.survived += 1
        assert d.stop()[0] == 0
