"""The watch target churns: the library file and its directory are deleted, re-created and
moved, and the kernel's event queue overflows. Each ends in a correct rescan, never a silent
stop: after every step an edit must still be noticed, with the stat safety net turned off
(verify_seconds is an hour), so only file events can be what noticed it.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env, settle
from tests.support.common import wait_for
from tests.support.library import SynthLibrary, write_library
from tests.support.runner import DaemonProc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

N_TRACKS = 200
WRONG_EVENTS = ("track_removed", "track_added", "cache_invalidated")


class Churn:
    def __init__(self, d: DaemonProc, lib: SynthLibrary) -> None:
        self.d = d
        self.lib = lib
        self.edits = 0
        self.pid = next(iter(lib.tracks))

    def edit(self, *, write: bool = True) -> str:
        """Change a genre; returns the new value. `write=False` only renders it."""
        self.edits += 1
        genre = f"Churn {self.edits}"
        self.lib.tracks[self.pid]["Genre"] = genre
        if write:
            write_library(self.d.library, self.lib.render())
        return genre

    def expect_genre(self, genre: str, timeout: float = 15) -> None:
        with self.d.client() as c:
            wait_for(
                lambda: (c.track(self.pid) or {}).get("genre") == genre,
                timeout,
                what=f"genre {genre!r} noticed",
            )

    def alive_after(self, mark: int) -> None:
        """No wrong events since `mark`, and a new edit is still noticed by a file event."""
        wrong = self.d.events_since(mark, *WRONG_EVENTS)
        assert not wrong, wrong
        self.expect_genre(self.edit())


def step_file_deleted_and_recreated(ch: Churn) -> None:
    d = ch.d
    mark = d.mark()
    data = d.library.read_bytes()
    d.library.unlink()
    d.wait_log("library_missing", after=mark)
    with d.client() as c:
        assert c.status()["library"]["missing"] is True
    d.library.write_bytes(data)
    d.wait_log("library_readable_again", after=mark)
    ch.alive_after(mark)


def step_file_recreated_with_a_change(ch: Churn) -> None:
    d = ch.d
    mark = d.mark()
    d.library.unlink()
    d.wait_log("library_missing", after=mark)
    genre = ch.edit(write=False)
    d.library.write_bytes(ch.lib.render())
    ch.expect_genre(genre)
    ch.alive_after(mark)


def moved_away_and_back(ch: Churn, path: Path, away: Path, *, watched_again: bool) -> None:
    """Move `path` (the file or its directory) to `away` and back: missing, then readable
    again (and, for the directory, watched again)."""
    d = ch.d
    mark = d.mark()
    path.rename(away)
    d.wait_log("library_missing", after=mark)
    away.rename(path)
    if watched_again:
        d.wait_log("watch_started", after=mark, path=str(path))
    d.wait_log("library_readable_again", after=mark)
    ch.alive_after(mark)


def step_file_moved_away_and_back(ch: Churn) -> None:
    away = ch.d.library.with_name("Library.xml.away")
    moved_away_and_back(ch, ch.d.library, away, watched_again=False)


def step_file_moved_out_of_its_dir_and_back_changed(ch: Churn) -> None:
    d = ch.d
    mark = d.mark()
    away = d.root / "Library.xml.elsewhere"
    d.library.rename(away)
    d.wait_log("library_missing", after=mark)
    genre = ch.edit(write=False)
    away.write_bytes(ch.lib.render())
    away.rename(d.library)
    ch.expect_genre(genre)
    ch.alive_after(mark)


def step_dir_removed_and_recreated(ch: Churn) -> None:
    d = ch.d
    mark = d.mark()
    shutil.rmtree(d.library.parent)
    d.wait_log("library_dir_missing", after=mark)
    d.wait_log("library_missing", after=mark)
    with d.client() as c:
        assert c.status()["library"]["watching"] != str(d.library.parent)
    d.library.parent.mkdir()
    genre = ch.edit()
    ch.expect_genre(genre)
    d.wait_log("watch_started", after=mark, path=str(d.library.parent))
    ch.alive_after(mark)


def step_dir_moved_away_and_back(ch: Churn) -> None:
    moved_away_and_back(ch, ch.d.library.parent, ch.d.root / "lib.away", watched_again=True)


def step_dir_replaced_in_one_rename(ch: Churn) -> None:
    """A sync tool swaps in a new directory: the old watch points at a directory that is gone."""
    d = ch.d
    mark = d.mark()
    fresh = d.root / "lib.new"
    fresh.mkdir()
    genre = ch.edit(write=False)
    (fresh / d.library.name).write_bytes(ch.lib.render())
    old = d.root / "lib.old"
    d.library.parent.rename(old)
    fresh.rename(d.library.parent)
    shutil.rmtree(old)
    ch.expect_genre(genre)
    ch.alive_after(mark)


def step_event_queue_overflow(ch: Churn) -> None:
    """Stop the daemon, overflow its inotify queue, edit the library while its events are being
    dropped, let it go on: the overflow must force a rescan that finds the edit."""
    d = ch.d
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    mark = d.mark()
    os.kill(d.pid, signal.SIGSTOP)
    try:
        flood = d.library.parent / "flood"
        # Each file costs at least a create and a delete event in the watched directory.
        for i in range(limit // 2 + 1000):
            path = f"{flood}-{i}"
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.unlink(path)
        genre = ch.edit()
    finally:
        os.kill(d.pid, signal.SIGCONT)
    lost = d.wait_log("file_events_lost", after=mark, timeout=20)
    assert lost["action"] == "rescanning"
    ch.expect_genre(genre)
    ch.alive_after(mark)


STEPS: list[Callable[[Churn], None]] = [
    step_file_deleted_and_recreated,
    step_file_recreated_with_a_change,
    step_file_moved_away_and_back,
    step_file_moved_out_of_its_dir_and_back_changed,
    step_dir_removed_and_recreated,
    step_dir_moved_away_and_back,
    step_dir_replaced_in_one_rename,
    step_event_queue_overflow,
]


def test_watch_target_churn_always_ends_in_a_correct_rescan(report: Report) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    tally = report.case("watch_churn")
    failures: list[str] = []
    with faulty_env(lib.render(), library={"settle_seconds": 0.05, "verify_seconds": 3600}) as d:
        d.start()
        d.wait_log("flush_finished")
        ch = Churn(d, lib)
        for step in STEPS:
            tally.tried += 1
            try:
                step(ch)
            except (AssertionError, OSError) as err:
                failures.append(f"{step.__name__}: {str(err).splitlines()[0]}")
                break
            tally.survived += 1
        with d.client() as c:
            settle(c)
        snapshot = d.snapshot_tracks()
        wrong = [pid for pid, row in lib.expected_rows().items() if snapshot.get(pid) != row]
        tally.lost += len(wrong)
        assert d.stop()[0] == 0
    assert not failures, failures
    assert not wrong
