"""The mass-removal guard, end to end: a library that suddenly lost most (or all) of its tracks
is not trusted until a later scan confirms it or the user accepts it; the API cache keeps every
answer meanwhile."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env, seed_answers, settle
from tests.support.common import wait_for
from tests.support.library import SynthLibrary, render_plist, write_library
from tests.support.runner import DaemonProc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

N_TRACKS = 200
N_ALBUMS = N_TRACKS // 10


def cached_albums(d: DaemonProc) -> int:
    with d.client() as c:
        stats: dict[str, Any] = c.stats()["cache"]
    return int(stats["albums"])


def keep_first(lib: SynthLibrary, n: int) -> SynthLibrary:
    return SynthLibrary(dict(list(lib.tracks.items())[:n]))


@contextmanager
def guarded(report: Report, lib: SynthLibrary, **library: object) -> Iterator[DaemonProc]:
    """A daemon on `lib` with every album's answers cached and its startup scan done; a case
    of the tally, survived when the block ends without an error."""
    tally = report.case("mass_removal_guard")
    tally.tried += 1
    with faulty_env(lib.render(), library={"settle_seconds": 0.05, **library}) as d:
        seed_answers(d, N_ALBUMS)
        d.start()
        d.wait_log("scan_finished", reason="startup")
        d.wait_log("flush_finished")
        yield d
    tally.survived += 1


def expect_held(d: DaemonProc, mark: int, removed: int) -> dict[str, Any]:
    held = d.wait_log("mass_removal_held", after=mark)
    assert held["removed"] == removed
    assert "accept-removals" in held["hint"]
    d.wait_log("scan_finished", after=mark)
    with d.client() as c:
        settle(c)
        status = c.status()
    assert status["library"]["held_removals"] == removed
    assert status["library"]["held_since"] is not None
    assert status["library"]["track_count"] == N_TRACKS
    assert not d.events_since(mark, "track_removed", "cache_invalidated")
    assert cached_albums(d) == N_ALBUMS
    assert len(d.snapshot_tracks()) == N_TRACKS
    return status


CASES: dict[str, Any] = {
    # name: (tracks left, config)
    "empty_library": (0, {}),
    "empty_library_ratio_1": (0, {"mass_removal_ratio": 1.0}),
    "lost_60_percent": (80, {}),
    "lost_30_percent_ratio_0.2": (140, {"mass_removal_ratio": 0.2}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mass_removal_is_held_then_accepted(report: Report, case: str) -> None:
    left, config = CASES[case]
    lib = SynthLibrary.generate(N_TRACKS)
    with guarded(report, lib, mass_removal_confirm_seconds=3600, **config) as d:
        mark = d.mark()
        write_library(d.library, keep_first(lib, left).render())
        expect_held(d, mark, N_TRACKS - left)
        # Another look at the same file (a rescan) before the delay is still not enough.
        with d.client() as c:
            outcome = c.rescan()
        assert outcome["removed"] == 0 and outcome["held_removals"] == N_TRACKS - left
        # The user says the tracks really are gone: `musicd rescan --accept-removals`.
        mark = d.mark()
        cfg = str(d.config_path)
        cli = subprocess.run(
            [sys.executable, "-m", "daemon", "rescan", "--accept-removals", "--config", cfg],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert f"{N_TRACKS - left} removed" in cli.stdout
        d.wait_log("cache_invalidated", after=mark)
        with d.client() as c:
            settle(c)
            assert c.status()["library"]["held_removals"] == 0
        assert cached_albums(d) == left // 10
        assert set(d.snapshot_tracks()) == set(keep_first(lib, left).tracks)
        assert d.stop()[0] == 0


def test_held_removal_is_applied_when_a_later_scan_confirms_it(report: Report) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    with guarded(report, lib, mass_removal_confirm_seconds=1.5, verify_seconds=0.5) as d:
        mark = d.mark()
        write_library(d.library, keep_first(lib, 50).render())
        status = expect_held(d, mark, 150)
        confirmed = d.wait_log("mass_removal_confirmed", after=mark, timeout=15)
        assert confirmed["removed"] == 150
        d.wait_log("cache_invalidated", after=mark)
        with d.client() as c:
            settle(c)
            after = c.status()
        assert after["library"]["held_removals"] == 0
        assert after["last_scan_at"] - status["library"]["held_since"] >= 1.5
        assert cached_albums(d) == 5
        assert len(d.snapshot_tracks()) == 50
        assert d.stop()[0] == 0


def test_held_removal_survives_a_restart_and_a_restored_library_clears_it(report: Report) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    with guarded(report, lib, mass_removal_confirm_seconds=3600) as d:
        mark = d.mark()
        write_library(d.library, render_plist([]))
        expect_held(d, mark, N_TRACKS)
        assert d.stop()[0] == 0
        # Restarted on the empty library: still held, still nothing invalidated.
        mark = d.mark()
        d.start()
        expect_held(d, mark, N_TRACKS)
        # The real library comes back (a sync finished): the hold ends, nothing was lost.
        mark = d.mark()
        write_library(d.library, lib.render())
        d.wait_log("scan_finished", after=mark)
        with d.client() as c:
            wait_for(lambda: c.status()["library"]["held_removals"] == 0, what="hold cleared")
            settle(c)
        assert not d.events_since(mark, "track_removed", "track_added", "cache_invalidated")
        assert cached_albums(d) == N_ALBUMS
        assert len(d.snapshot_tracks()) == N_TRACKS
        assert d.stop()[0] == 0


def test_removal_below_the_share_is_applied_at_once(report: Report) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    with guarded(report, lib) as d:
        mark = d.mark()
        write_library(d.library, keep_first(lib, 110).render())  # 45% removed
        d.wait_log("cache_invalidated", after=mark)
        assert not d.find_logs("mass_removal_held")
        with d.client() as c:
            settle(c)
        assert cached_albums(d) == 11
        assert d.stop()[0] == 0
