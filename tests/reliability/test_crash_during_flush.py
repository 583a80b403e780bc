"""kill -9 at random moments around commits and checkpoints; after each restart nothing is lost.

One daemon is killed and restarted over and over on one state dir. Each cycle:

1. cache entries are put on "keeper" albums (never edited);
2. the library is edited so a fresh "victim" album must be invalidated;
3. the daemon is killed with SIGKILL at a random moment: mostly a few milliseconds after it
   logged the scan of that edit (so the kill lands while the consumers apply it and the
   checkpoint that follows runs), sometimes at any moment after the edit; in every other cycle
   it is killed once more during the reconciliation that follows its restart;
4. it is restarted and, once its consumers have reached the journal's end, checked: the
   database opens and passes quick_check, every acknowledged entry is there, every victim
   album's answers are gone (through the socket and in the file), and the tracks table is
   exactly the library.

A background client keeps putting entries and asking for flushes (checkpoints) meanwhile, so
kills also land in commits and checkpoints; an entry counts as acknowledged once its
`cache.put` answer arrived (a commit is durable against the process dying; no flush needed).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter

import pytest

from daemon.models import album_key
from tests.reliability.conftest import Report
from tests.reliability.harness import (
    SOURCES,
    faulty_env,
    iterations,
    seed_answers,
    soak_factor,
)
from tests.support.common import wait_for
from tests.support.database import database_problems, db_cache_entries
from tests.support.library import SynthLibrary, album_of, artist_of, write_library
from tests.support.runner import DaemonProc

KILLS = iterations(40)
# Enough albums for one victim per cycle (a cycle makes 1.5 kills on average).
N_TRACKS = max(2000, 10 * KILLS)
PER_ALBUM = 10
N_ALBUMS = N_TRACKS // PER_ALBUM
SEED = 20261121

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300 * soak_factor())]


class Background:
    """Puts entries on keeper albums and requests flushes until stopped (or the daemon dies)."""

    def __init__(self, d: DaemonProc, keepers: list[int], rng: random.Random) -> None:
        self.d = d
        self.keepers = keepers
        self.rng = rng
        self.acked: list[tuple[int, str]] = []
        self.flushes = 0
        self._stop = threading.Event()
        self._n = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.d.client(timeout=10) as c:
                while not self._stop.is_set():
                    for _ in range(self.rng.randint(1, 5)):
                        self._n += 1
                        a = self.rng.choice(self.keepers)
                        source = f"bg-{self.d.pid}-{self._n}"
                        c.cache_put(artist_of(a), album_of(a), source, data={"n": self._n})
                        # Acknowledged: the answer comes after the commit.
                        self.acked.append((a, source))
                    c.flush()
                    self.flushes += 1
        except Exception:
            return  # the daemon was killed: whatever was not acknowledged may be lost

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def kill_after(d: DaemonProc, mark: int, rng: random.Random, *, scan_reason: str) -> str:
    """Kill -9 soon after the next scan_finished (or at a random moment); say how.

    Some kills come during a shutdown: SIGTERM then SIGKILL while it drains and writes its
    final flush, or two SIGTERMs (the second one exits at once, without a flush).
    """
    how = rng.choices(
        ["after_scan", "term_then_kill", "double_term", "random"], weights=[60, 15, 5, 20]
    )[0]
    if how == "random":
        time.sleep(rng.uniform(0, 0.5))
        d.kill9()
        return how
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(
            e.get("event") == "scan_finished"
            and (scan_reason == "*" or e.get("reason") == scan_reason)
            for e in d.logs()[mark:]
        ):
            break
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.06))
    if how == "after_scan":
        d.kill9()
        return how
    with contextlib.suppress(ProcessLookupError):
        os.kill(d.pid, signal.SIGTERM)
        time.sleep(rng.uniform(0, 0.1) if how == "term_then_kill" else rng.uniform(0, 0.01))
        os.kill(d.pid, signal.SIGKILL if how == "term_then_kill" else signal.SIGTERM)
    assert d.proc is not None
    d.proc.wait(timeout=20)
    return how


def classify_kill(d: DaemonProc) -> str:
    """Where the kill landed, judged from the WAL it left: commits not yet checkpointed (the
    next start replays them) or none."""
    wal = d.state_dir / "musicd.db-wal"
    size = wal.stat().st_size if wal.exists() else 0
    return "with_wal" if size else "wal_empty"


def test_kill_9_around_flushes_loses_nothing(report: Report) -> None:
    rng = random.Random(SEED)
    lib = SynthLibrary.generate(N_TRACKS, PER_ALBUM)
    albums = list(range(N_ALBUMS))
    rng.shuffle(albums)
    # A quarter of the albums are never edited; the others are edited one per cycle.
    keepers = sorted(albums[: N_ALBUMS // 4])
    victims = albums[N_ALBUMS // 4 :]
    tally = report.case("crash_during_flush")
    hows: Counter[str] = Counter()  # how each kill was made
    landed: Counter[str] = Counter()  # where it landed, judged from the state dir
    acked: list[tuple[int, str]] = []
    invalidated: list[int] = []
    problems: list[str] = []

    with faulty_env(
        lib.render(),
        library={"settle_seconds": 0.03, "verify_seconds": 3600},
        state={"flush_interval_seconds": 0.01},
    ) as d:
        seed_answers(d, N_ALBUMS, payload=800)
        d.start()
        d.wait_log("scan_finished", reason="startup")
        kills = cycle = 0
        while kills < KILLS:
            cycle += 1
            # 1. acknowledged entries on keeper albums
            with d.client() as c:
                for _ in range(3):
                    a = rng.choice(keepers)
                    source = f"acked-{cycle}-{len(acked)}"
                    c.cache_put(artist_of(a), album_of(a), source, data={"cycle": cycle})
                    acked.append((a, source))
            # 2. edit a victim album, with background puts and flushes going on
            victim = victims[(cycle - 1) % len(victims)]
            if cycle > len(victims):
                pytest.fail("ran out of victim albums; make the library bigger")
            edit_victim(lib, victim, cycle)
            invalidated.append(victim)
            with Background(d, keepers, random.Random(rng.random())) as bg:
                mark = d.mark()
                write_library(d.library, lib.render(), by_rename=rng.random() < 0.8)
                hows[kill_after(d, mark, rng, scan_reason="*")] += 1
            acked.extend(bg.acked)
            killed = [classify_kill(d)]
            problems += database_problems(d.state_dir)
            # 3. every other cycle, kill it again while it reconciles after the restart
            if cycle % 2 == 0 and kills + 1 < KILLS:
                mark = d.mark()
                d.start(wait_ready=False)
                hows["reconciling_" + kill_after(d, mark, rng, scan_reason="startup")] += 1
                killed.append(classify_kill(d))
                problems += database_problems(d.state_dir)
            landed.update(killed)
            kills += len(killed)
            # 4. restart and check
            mark = d.mark()
            d.start()
            d.wait_log("scan_finished", after=mark, reason="startup", timeout=30)
            found = check_invariants(d, lib, acked, invalidated, seed_albums=N_ALBUMS)
            problems += found
            tally.tried += len(killed)
            tally.survived += 0 if found else len(killed)
        # A loss shows in every later check too: count each one once.
        tally.lost = len(set(problems))
        tally.notes = {
            "acked_entries": len(acked),
            "invalidations": len(invalidated),
            **{f"landed_{k}": v for k, v in sorted(landed.items())},
            **{f"by_{k}": v for k, v in sorted(hows.items())},
        }
        assert d.stop()[0] == 0
    assert not problems, sorted(set(problems))[:20]


def edit_victim(lib: SynthLibrary, victim: int, cycle: int) -> None:
    """An edit that must invalidate the victim album: a rename, a removal or a new artist."""
    pids = lib.album_pids(artist_of(victim), album_of(victim))
    how = cycle % 3
    if how == 0:
        for pid in pids:
            lib.tracks[pid]["Album"] = f"{album_of(victim)} (Deluxe {cycle})"
    elif how == 1:
        del lib.tracks[pids[0]]
    else:
        for pid in pids:
            lib.tracks[pid]["Artist"] = lib.tracks[pid]["Album Artist"] = f"Someone {cycle}"


def check_invariants(
    d: DaemonProc,
    lib: SynthLibrary,
    acked: list[tuple[int, str]],
    invalidated: list[int],
    *,
    seed_albums: int,
) -> list[str]:
    problems: list[str] = []
    with d.client() as c:
        # The startup scan is recorded; its events are applied once no consumer is behind.
        wait_for(lambda: c.status()["pending_events"] == 0, 30, what="consumers caught up")
        stats = c.stats()["cache"]["by_source"]
        for source in SOURCES:
            want = seed_albums - len(invalidated)
            got = stats.get(source, {}).get("entries", 0)
            if got != want:
                problems.append(f"{source}: {got} seeded entries, expected {want}")
        # Every acknowledged entry is checked in the file below; the newest also over the socket.
        missing = [
            (a, s) for a, s in acked[-50:] if c.cache_get(artist_of(a), album_of(a), s) is None
        ]
        problems += [f"acknowledged entry lost: {album_of(a)} {s}" for a, s in missing]
        stale = [
            v for v in invalidated if c.cache_get(artist_of(v), album_of(v), SOURCES[0]) is not None
        ]
        problems += [f"missed invalidation: {album_of(v)}" for v in stale]
    # The same in the file, and the tracks table is exactly the library.
    entries = db_cache_entries(d.state_dir)
    in_file = {album_key(e["artist"], e["album"]) for e in entries}
    sources_in_file = {(album_key(e["artist"], e["album"]), e["source"]) for e in entries}
    problems += [
        f"acknowledged entry lost in the file: {album_of(a)} {s}"
        for a, s in acked
        if (album_key(artist_of(a), album_of(a)), s) not in sources_in_file
    ]
    problems += [
        f"missed invalidation in the file: {album_of(v)}"
        for v in invalidated
        if album_key(artist_of(v), album_of(v)) in in_file
    ]
    snapshot = d.snapshot_tracks()
    expected = lib.expected_rows()
    if snapshot != expected:
        wrong = sorted(set(snapshot) ^ set(expected)) or [
            pid for pid in expected if snapshot.get(pid) != expected[pid]
        ]
        problems.append(f"tracks differ from the library: {len(wrong)} tracks, e.g. {wrong[:3]}")
    # The files as each kill left them were checked (database_problems) before this restart.
    moved = d.find_logs("database_corrupt")
    problems += [f"database moved aside: {e.get('moved_to')}" for e in moved]
    return problems
