"""Races between a failing read and the next write, at the reader boundary.

The reader is the one pluggable boundary of the scanner: these tests give it readers that
fail the way a real one does when the file is rewritten under it, with the file really
rewritten at that moment, and check that the last version is still read. No watcher runs, as
when inotify is unavailable: only the stat safety net can notice the new version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from daemon.consumers.follow import JournalSignal
from daemon.errors import LibraryChangedDuringRead, LibraryReadError
from daemon.events import SCAN_FINISHED
from daemon.hub import EventHub
from daemon.library import LibraryRead
from daemon.library.xml_reader import read_library_xml
from daemon.recorder import Recorder
from daemon.scanner import CHANGED_DURING_READ_RETRIES, Scanner
from daemon.stores.database import open_database
from daemon.stores.writer import Writer
from daemon.watcher import Wakeup
from tests.reliability.conftest import Report
from tests.support.library import SynthLibrary, write_library

pytestmark = pytest.mark.timeout(30)


def make_scanner(path: Path, reader: Callable[[], LibraryRead], recorder: Recorder) -> Scanner:
    return Scanner(
        reader=reader,
        library_path=path,
        baseline={},
        baseline_stat=None,
        initial_build=True,
        recorder=recorder,
        wakeup=Wakeup(),
        settle_seconds=0.01,
        settle_max_seconds=0.1,
        verify_seconds=0.05,
        full_scan_interval_seconds=3600,
        last_full_scan=None,
        mass_removal_ratio=0.5,
        mass_removal_confirm_seconds=300,
    )


def genre_recorded(conn: sqlite3.Connection, want: str) -> bool:
    row = conn.execute("SELECT 1 FROM tracks WHERE genre = ? LIMIT 1", (want,)).fetchone()
    return row is not None


async def run_until_read(
    path: Path, state_dir: Path, reader: Callable[[], LibraryRead], want: str
) -> None:
    """Run the scanner on a real database until a track of genre `want` is committed; fail
    after 5 s."""
    await anyio.Path(state_dir).mkdir(mode=0o700)
    db = await anyio.to_thread.run_sync(open_database, state_dir)
    try:
        writer = Writer(db.writer)
        hub = EventHub()
        scans = hub.subscribe([SCAN_FINISHED])
        recorder = Recorder(writer, hub, JournalSignal(), last_seq=0)
        scanner = make_scanner(path, reader, recorder)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            tg.start_soon(scanner.run)
            with anyio.fail_after(5):
                # Each recorded scan is published after its commit: look at the table then.
                async for _ in scans.receive:
                    if genre_recorded(db.reader, want):
                        break
            tg.cancel_scope.cancel()
        hub.close()
        scans.receive.close()
    finally:
        db.close()


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

    def reader() -> LibraryRead:
        # The first scan catches the file mid-rewrite: the read fails, and the rewrite
        # completes before the scanner has handled the failure.
        nonlocal calls
        calls += 1
        if failure == "unreadable" and calls == 1:
            write_library(path, final_bytes)
            raise LibraryReadError(f"library file {path} is empty")
        if failure == "kept_changing" and calls <= CHANGED_DURING_READ_RETRIES:
            if calls == CHANGED_DURING_READ_RETRIES:
                write_library(path, final_bytes)
            raise LibraryChangedDuringRead(f"library file {path} changed while it was read")
        return read_library_xml(path)

    tally = report.case("read_failure_races")
    tally.tried += 1
    await run_until_read(path, tmp_path / "state", reader, "Final")
    tally.survived += 1
