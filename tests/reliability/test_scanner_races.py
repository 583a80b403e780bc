"""Races between a failing read and the next write, at the reader boundary.

The reader is the one pluggable boundary of the scanner: these tests give it readers that
fail the way a real one does when the file is rewritten under it, with the file really
rewritten at that moment, and check that the last version is still read. No watcher runs, as
when inotify is unavailable: only the stat safety net can notice the new version, except where
a test notifies the scanner as the watcher would, with the safety net an hour away.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from daemon.errors import LibraryChangedDuringRead, LibraryReadError
from daemon.events import SCAN_FINISHED
from daemon.journal import merger
from daemon.journal.hub import EventHub, Subscription
from daemon.journal.recorder import Recorder
from daemon.journal.signal import Signal
from daemon.library import LibraryRead
from daemon.library.xml_reader import read_library_xml
from daemon.stores import journal, tracks
from daemon.stores.database import Database, open_database
from daemon.stores.writer import Writer
from daemon.watch import baseline as baseline_mod
from daemon.watch.scanner import CHANGED_DURING_READ_RETRIES, Scanner
from tests.reliability.conftest import Report
from tests.support import wait_for
from tests.support.library import SynthLibrary, write_library
from tests.watch.scanner_support import CallReader, fresh_scanner

pytestmark = pytest.mark.timeout(30)


def genre_recorded(conn: sqlite3.Connection, want: str) -> bool:
    row = conn.execute("SELECT 1 FROM tracks WHERE genre = ? LIMIT 1", (want,)).fetchone()
    return row is not None


@asynccontextmanager
async def scanner_running(
    path: Path,
    state_dir: Path,
    reader: Callable[[], LibraryRead],
    *,
    verify_seconds: float = 0.05,
    after_scan: Callable[[], None] = lambda: None,
) -> AsyncIterator[tuple[Scanner, Database, Subscription]]:
    """The scanner running on a real database, with a subscription to its recorded scans."""
    await anyio.Path(state_dir).mkdir(mode=0o700)
    db = await anyio.to_thread.run_sync(open_database, state_dir)
    try:
        writer = Writer(db)
        hub = EventHub()
        scans = hub.subscribe([SCAN_FINISHED])
        recorder = Recorder(writer, hub, Signal(), last_seq=0)
        head = tracks.HeadTracks(db.path, merger.CONSUMER)
        scanner = fresh_scanner(
            path,
            CallReader(reader),
            recorder,
            verify_seconds=verify_seconds,
            snapshot=head,
            after_scan=after_scan,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            tg.start_soon(scanner.run)
            yield scanner, db, scans
            tg.cancel_scope.cancel()
        hub.close()
        scans.receive.close()
        head.close()
    finally:
        db.close()


async def until_scanned(db: Database, genre: str) -> None:
    """Until a recorded scan saw a track of `genre` (the baseline moves after the commit)."""
    head = tracks.HeadTracks(db.path, merger.CONSUMER)

    def seen() -> bool:
        return any(track.genre == genre for track in head.each())

    try:
        await anyio.to_thread.run_sync(partial(wait_for, seen, timeout=5, what=genre))
    finally:
        head.close()


async def run_until_read(
    path: Path, state_dir: Path, reader: Callable[[], LibraryRead], want: str
) -> int:
    """Run the scanner on a real database until a track of genre `want` is committed (fail
    after 5 s); return how many scans were recorded by then."""
    recorded = 0
    async with scanner_running(path, state_dir, reader) as (_, db, scans):
        with anyio.fail_after(5):
            # Each recorded scan is delivered after its commit: look at the table then.
            async for _ in scans.receive:
                recorded += 1
                if genre_recorded(db.read_conn, want):
                    break
    return recorded


def net_an_hour_away(
    path: Path, tmp_path: Path, reader: Callable[[], LibraryRead]
) -> AbstractAsyncContextManager[tuple[Scanner, Database, Subscription]]:
    """`scanner_running` with its safety net an hour away: only a change's notification (or
    the startup scan) starts a scan."""
    return scanner_running(path, tmp_path / "state", reader, verify_seconds=3600)


def versions(tmp_path: Path) -> tuple[Path, SynthLibrary, bytes]:
    lib = SynthLibrary.generate(20)
    path = tmp_path / "Library.xml"
    write_library(path, lib.render())
    final = lib.copy()
    next(iter(final.tracks.values()))["Genre"] = "Final"
    return path, final, final.render()


@pytest.mark.parametrize("failure", ["unreadable", "kept_changing"])
async def test_a_version_written_while_a_read_fails_is_read_later(
    tmp_path: Path, report: Report, failure: str
) -> None:
    path, _final, final_bytes = versions(tmp_path)
    calls = 0
    failed: list[int] = []

    def reader() -> LibraryRead:
        # The first scan catches the file mid-rewrite: the read fails, and the rewrite
        # completes before the scanner has handled the failure.
        nonlocal calls
        calls += 1
        if failure == "unreadable" and calls == 1:
            write_library(path, final_bytes)
            failed.append(calls)
            raise LibraryReadError(f"library file {path} is empty")
        if failure == "kept_changing" and calls <= CHANGED_DURING_READ_RETRIES:
            if calls == CHANGED_DURING_READ_RETRIES:
                write_library(path, final_bytes)
            failed.append(calls)
            raise LibraryChangedDuringRead(f"library file {path} changed while it was read")
        return read_library_xml(path)

    tally = report.case("read_failure_races")
    tally.tried += 1
    recorded = await run_until_read(path, tmp_path / "state", reader, "Final")
    # The reads that failed came first; the version written meanwhile is the first recorded.
    retries = CHANGED_DURING_READ_RETRIES if failure == "kept_changing" else 1
    assert failed == list(range(1, retries + 1))
    assert calls > retries and recorded == 1
    tally.survived += 1


class BugOnce:
    """`work`, except that its first call fails the way a bug does (no LibraryReadError)."""

    def __init__(self, work: Callable[..., Any]) -> None:
        self.work = work
        self.fired = False

    def __call__(self, *args: Any) -> Any:
        if not self.fired:
            self.fired = True
            raise RuntimeError("a bug")
        return self.work(*args)


@pytest.mark.parametrize("where", ["reader", "differ"])
async def test_a_scan_bug_cannot_stop_watching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # An unexpected exception fails that one scan: the next change is still scanned. The
    # safety net is an hour away, so only the change's notification can start that scan.
    path, final, final_bytes = versions(tmp_path)
    reader: Callable[[], LibraryRead] = partial(read_library_xml, path)
    bug = BugOnce(reader if where == "reader" else baseline_mod.diff_tracks)
    if where == "reader":
        reader = bug
    else:
        monkeypatch.setattr(baseline_mod, "diff_tracks", bug)
    async with net_an_hour_away(path, tmp_path, reader) as (scanner, db, scans):
        with anyio.fail_after(5):
            if where == "differ":
                # The first scan builds the snapshot without a diff; a change needs one.
                await scans.receive.receive()
                changed = final.copy()
                next(iter(changed.tracks.values()))["Genre"] = "Changed"
                write_library(path, changed.render())
                scanner.changes.notify("modified")
            await anyio.to_thread.run_sync(
                wait_for, lambda: bug.fired and not scanner._lock.locked()
            )
        assert bug.fired
        write_library(path, final_bytes)
        scanner.changes.notify("modified")
        # Only that notification can start the scan (the safety net is an hour away): the
        # scanner still watches after the bug.
        await until_scanned(db, "Final")
        assert scanner.status.reader_error is None  # that scan read and recorded cleanly
        assert scanner.status.last_scan_reason == "modified"


async def test_last_full_scan_records_whether_the_read_was_full(tmp_path: Path) -> None:
    # The reader says which reads were full (the fast readers read incrementally in between);
    # the scanner keeps no timer of its own.
    path, final, _ = versions(tmp_path)
    full = [True, False, True]

    def reader() -> LibraryRead:
        return dataclasses.replace(read_library_xml(path), full=full.pop(0))

    async with net_an_hour_away(path, tmp_path, reader) as (scanner, db, _):
        metas = []
        for genre in ("Startup", "Second", "Third"):
            if metas:
                next(iter(final.tracks.values()))["Genre"] = genre
                write_library(path, final.render())
                scanner.changes.notify("modified")

            # The baseline (and with it status) moves once the scan is committed.
            def recorded(want: int = len(metas) + 1) -> bool:
                return scanner.status.scans == want

            await anyio.to_thread.run_sync(wait_for, recorded)
            metas.append(journal.meta(db.read_conn))
    first, incremental, third = metas
    assert first["last_full_scan"] == first["last_scan"] is not None
    assert incremental["last_scan"] > first["last_scan"]
    assert incremental["last_full_scan"] == first["last_full_scan"]
    assert third["last_full_scan"] == third["last_scan"] > incremental["last_scan"]


async def test_memory_is_released_after_each_scan(tmp_path: Path) -> None:
    # daemon.process.release_free_memory runs after each scan (the build included), once the
    # scan is recorded and its objects are gone.
    path, final, _ = versions(tmp_path)
    full = [True, False, True]
    released: list[int] = []

    def reader() -> LibraryRead:
        return dataclasses.replace(read_library_xml(path), full=full.pop(0))

    def release() -> None:
        released.append(scanner.status.scans)

    async with scanner_running(
        path, tmp_path / "state", reader, verify_seconds=3600, after_scan=release
    ) as (scanner, _, scans):
        with anyio.fail_after(5):
            await scans.receive.receive()
            for genre in ("Second", "Third"):
                next(iter(final.tracks.values()))["Genre"] = genre
                write_library(path, final.render())
                scanner.changes.notify("modified")
                await scans.receive.receive()
        # The last scan's release comes after its record.
        await anyio.to_thread.run_sync(wait_for, lambda: len(released) == 3)
    assert full == []
    assert released == [1, 2, 3]


async def test_a_full_read_whose_scan_was_not_recorded_counts_when_the_next_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The full read's scan fails (a bug in the differ); the next read is incremental, as the
    # reader moved on, and is what gets recorded: as full, since the full read was never.
    path, final, _ = versions(tmp_path)
    full = [True, True, False]

    def reader() -> LibraryRead:
        return dataclasses.replace(read_library_xml(path), full=full.pop(0))

    bug = BugOnce(baseline_mod.diff_tracks)
    monkeypatch.setattr(baseline_mod, "diff_tracks", bug)
    async with net_an_hour_away(path, tmp_path, reader) as (scanner, db, scans):
        with anyio.fail_after(5):
            await scans.receive.receive()  # the first build, recorded
        first = journal.meta(db.read_conn)
        for genre in ("Lost", "Kept"):
            next(iter(final.tracks.values()))["Genre"] = genre
            write_library(path, final.render())
            scanner.changes.notify("modified")
            if genre == "Lost":
                await anyio.to_thread.run_sync(
                    wait_for, lambda: bug.fired and not scanner._lock.locked()
                )
        await until_scanned(db, "Kept")
        kept = journal.meta(db.read_conn)
    assert full == []  # three reads: the build, the one whose scan failed, the recorded one
    assert kept["last_scan"] > first["last_scan"]
    assert kept["last_full_scan"] == kept["last_scan"]
