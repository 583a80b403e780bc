"""Faults of the database file itself: damaged at start, locked by another program, its WAL
deleted under the running daemon.

- `damaged_database[...]`: the daemon is stopped and `musicd.db` truncated or overwritten
  (garbage appended, one page of the tracks table, the header, the second half). At the next
  start it is checked, moved aside as `musicd.db.corrupt-<ts>` when it is not sound (logged),
  rebuilt from the library, and the cached answers copied over where their pages can still be
  read. The daemon is up and the tracks table is exactly the library in every case.
- `database_locked`: another program holds a write transaction (`BEGIN IMMEDIATE`). A
  `cache.put` is refused within the busy timeout with an error naming the lock, reads go on,
  `status` shows `database_error`; once the lock is let go, writes succeed and the scan of an
  edit made meanwhile is recorded.
- `wal_deleted`: `musicd.db-wal` is unlinked while the daemon runs. The daemon notices at its
  next checkpoint, folds everything into the main file and starts a new WAL; answers
  acknowledged after that survive a `kill -9`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.errors import RemoteError
from daemon.stores.schema import DB_FILE
from tests.reliability.conftest import Report
from tests.reliability.harness import SOURCES, faulty_env, seed_answers
from tests.support.common import wait_for
from tests.support.database import database_problems, db_cache_entries
from tests.support.library import SynthLibrary, album_of, artist_of, write_library
from tests.support.runner import DaemonProc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

N_TRACKS = 2000
N_ALBUMS = 40


def cached(d: DaemonProc) -> set[tuple[str, str]]:
    return {(e["album"], e["source"]) for e in db_cache_entries(d.state_dir)}


def wait_quiet(d: DaemonProc) -> None:
    with d.client() as c:
        wait_for(lambda: c.status()["pending_events"] == 0, 20, what="consumers caught up")


# -- damaged at start ------------------------------------------------------------------------


def _page_size(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big") or 65536


def _tracks_root_page(path: Path) -> int:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return int(
            conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tracks'").fetchone()[0]
        )
    finally:
        conn.close()


def garbage_appended(path: Path) -> None:
    with path.open("ab") as fh:
        fh.write(os.urandom(3 * 4096 + 17))


def tracks_page_overwritten(path: Path) -> None:
    size, page = _page_size(path), _tracks_root_page(path)
    with path.open("r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(os.urandom(size))


def header_overwritten(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.write(os.urandom(100))


def truncated_to_half(path: Path) -> None:
    size = _page_size(path)
    pages = path.stat().st_size // size
    os.truncate(path, pages // 2 * size)


def truncated_mid_page(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 3 + 123)


DAMAGE: dict[str, tuple[Callable[[Path], None], bool]] = {
    # name: (damage, every cached answer must survive). The header goes last: nothing can be
    # salvaged from it, and the answers put back afterwards sit behind the tracks in the file,
    # where a truncation would take them.
    "garbage_appended": (garbage_appended, True),
    "tracks_page_overwritten": (tracks_page_overwritten, True),
    "truncated_to_half": (truncated_to_half, False),
    "truncated_mid_page": (truncated_mid_page, False),
    "header_overwritten": (header_overwritten, False),
}


def test_a_damaged_database_is_moved_aside_and_rebuilt(report: Report) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    failures: list[str] = []
    with faulty_env(lib.render(), library={"settle_seconds": 0.05}) as d:
        entries = seed_answers(d, N_ALBUMS, payload=200)
        want = {(e["album"], e["source"]) for e in entries}
        d.start()
        d.wait_log("scan_finished", reason="startup")
        for name, (damage, must_salvage) in DAMAGE.items():
            tally = report.case(f"damaged_database[{name}]")
            tally.tried += 1
            # Whatever an earlier case could not salvage is put back first (read once: a put
            # adds only its own entry).
            present = cached(d)
            with d.client() as c:
                for e in entries:
                    if (e["album"], e["source"]) not in present:
                        c.cache_put(
                            str(e["artist"]), str(e["album"]), str(e["source"]), data=e["data"]
                        )
            assert d.stop()[0] == 0
            db = d.state_dir / DB_FILE
            assert (
                not db.with_name(DB_FILE + "-wal").exists()
                or not db.with_name(DB_FILE + "-wal").stat().st_size
            )
            before = set(d.state_dir.glob("*.corrupt-*"))
            damage(db)
            mark = d.mark()
            d.start()
            d.wait_log("scan_finished", reason="startup", after=mark, timeout=30)
            wait_quiet(d)
            problems: list[str] = []
            moved = d.events_since(mark, "database_corrupt")
            aside = set(d.state_dir.glob("*.corrupt-*")) - before
            with d.client() as c:
                status = c.status()
            if moved:
                if not any(p.name.startswith(f"{DB_FILE}.corrupt-") for p in aside):
                    problems.append("logged as moved aside, but no corrupt- file")
                if not status["database"]["moved_aside"]:
                    problems.append("status.database.moved_aside not set")
            elif name != "garbage_appended":
                problems.append("damage not noticed")
            tracks = d.snapshot_tracks()
            if tracks != lib.expected_rows():
                problems.append(f"tracks table is not the library ({len(tracks)} rows)")
            have = cached(d)
            salvaged = len(want & have)
            if must_salvage and salvaged != len(want):
                problems.append(f"only {salvaged} of {len(want)} cached answers salvaged")
            problems += [
                p for p in database_problems(d.state_dir) if not p.startswith("moved aside")
            ]
            tally.lost += len(want) - salvaged
            tally.survived += not problems
            tally.notes = {"moved_aside": bool(moved), "salvaged": f"{salvaged}/{len(want)}"}
            failures += [f"{name}: {p}" for p in problems]
        assert d.stop()[0] == 0
    assert not failures, failures


# -- locked by another program ---------------------------------------------------------------


def test_a_database_locked_by_another_program(report: Report) -> None:
    lib = SynthLibrary.generate(400)
    tally = report.case("database_locked")
    tally.tried += 1
    # Checkpoints every 0.2 s: the flush_interval_seconds every test config has.
    with faulty_env(lib.render(), library={"settle_seconds": 0.05}) as d:
        seed_answers(d, N_ALBUMS, payload=200)
        d.start()
        d.wait_log("scan_finished", reason="startup")
        other = sqlite3.connect(d.state_dir / DB_FILE, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        pid = lib.album_pids(artist_of(3), album_of(3))[0]
        try:
            with d.client() as c:
                started = time.monotonic()
                with pytest.raises(RemoteError) as refused:
                    c.cache_put(artist_of(1), album_of(1), "while-locked", data={})
                waited = time.monotonic() - started
                assert refused.value.rpc_code == -32001
                assert "lock" in str(refused.value), refused.value
                assert waited < 15, waited
                # Reads go on; the status says what is wrong.
                assert c.cache_get(artist_of(2), album_of(2), SOURCES[0]) is not None
                assert c.track(pid)["album"] == album_of(3)
                assert c.status()["database_error"]
                # An edit made while it is locked: its scan cannot be recorded yet.
                mark = d.mark()
                for p in lib.album_pids(artist_of(3), album_of(3)):
                    lib.tracks[p]["Album"] = "Renamed While Locked"
                write_library(d.library, lib.render())
                d.wait_log("scan_not_recorded", after=mark, timeout=30)
                assert c.status()["scan_error"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        with d.client() as c:
            wait_for(
                lambda: c.track(pid)["album"] == "Renamed While Locked", 30, what="scan recorded"
            )
            c.cache_put(artist_of(1), album_of(1), "after-lock", data={})
            wait_for(lambda: not c.status()["database_error"], 10, what="error cleared")
            wait_quiet(d)
            assert c.status()["scan_error"] is None
            assert c.cache_get(artist_of(3), album_of(3), SOURCES[0]) is None
        assert d.snapshot_tracks() == lib.expected_rows()
        assert (album_of(1), "after-lock") in cached(d)
        assert d.stop()[0] == 0
        assert not database_problems(d.state_dir)
        tally.survived += 1
        tally.notes = {"refused_after_s": round(waited, 1)}


# -- the WAL deleted under the running daemon ------------------------------------------------


def test_wal_deleted_under_the_running_daemon(report: Report) -> None:
    lib = SynthLibrary.generate(200)
    tally = report.case("wal_deleted")
    acked: list[str] = []
    lost: set[str] = set()
    rounds = 5
    with faulty_env(
        lib.render(),
        library={"settle_seconds": 0.05},
        state={"flush_interval_seconds": 0.1},
    ) as d:
        d.start()
        d.wait_log("scan_finished", reason="startup")
        for r in range(rounds):
            tally.tried += 1
            wal = d.state_dir / (DB_FILE + "-wal")
            wait_for(wal.exists, 10, what="a WAL")
            with d.client() as c:
                c.cache_put(artist_of(0), album_of(0), f"before-{r}", data={})
                acked.append(f"before-{r}")
                mark = d.mark()
                wal.unlink()
                # Answers put after the deletion, then a checkpoint (the periodic one, or asked).
                c.cache_put(artist_of(0), album_of(0), f"between-{r}", data={})
                acked.append(f"between-{r}")
                if r % 2:
                    c.flush()
                # Waited for by its log line: a checkpoint already running when the file was
                # unlinked may have looked before, and only the next one notices.
                d.wait_log("database_wal_renewed", after=mark, timeout=10)
                for n in range(3):
                    c.cache_put(artist_of(1), album_of(1), f"after-{r}-{n}", data={})
                    acked.append(f"after-{r}-{n}")
                assert c.cache_get(artist_of(0), album_of(0), f"between-{r}") is not None
            d.kill9()
            d.start()
            have = {s for _, s in cached(d)}
            missing = [s for s in acked if s not in have]
            lost.update(missing)
            problems = database_problems(d.state_dir)
            tally.survived += not missing and not problems
        assert d.stop()[0] == 0
    tally.lost = len(lost)
    tally.notes = {"acked_entries": len(acked)}
    assert not lost and tally.survived == rounds, sorted(lost)
