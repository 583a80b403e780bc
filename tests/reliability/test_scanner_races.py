"""Races between a failing read and the next write, at the reader boundary.

The reader is the one pluggable boundary of the scanner: these tests give it readers that
fail the way a real one does when the file is rewritten under it, with the file really
rewritten at that moment, and check that the last version is still read. No watcher runs, as
when inotify is unavailable: only the stat safety net can notice the new version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.errors import LibraryChangedDuringRead, LibraryReadError
from daemon.events import AnyEvent, Sequencer, TrackModified
from daemon.library import LibraryRead
from daemon.library.xml_reader import read_library_xml
from daemon.pipeline import Batch, Fanout, Progress
from daemon.scanner import CHANGED_DURING_READ_RETRIES, Scanner
from daemon.watcher import Wakeup
from tests.reliability.conftest import Report
from tests.reliability.harness import SynthLibrary, write_library

pytestmark = pytest.mark.timeout(30)


def make_scanner(path: Path, reader: Callable[[], LibraryRead], fanout: Fanout) -> Scanner:
    return Scanner(
        reader=reader,
        library_path=path,
        baseline={},
        baseline_stat=None,
        initial_build=True,
        fanout=fanout,
        sequencer=Sequencer(),
        wakeup=Wakeup(),
        settle_seconds=0.01,
        settle_max_seconds=0.1,
        verify_seconds=0.05,
        full_scan_interval_seconds=3600,
        last_full_scan=None,
        mass_removal_ratio=0.5,
        mass_removal_confirm_seconds=300,
    )


async def drain(stream: anyio.abc.ObjectReceiveStream[Any]) -> None:
    async with stream:
        async for _ in stream:
            pass


async def run_until_read(path: Path, reader: Callable[[], LibraryRead], want: str) -> None:
    """Run the scanner until a batch carries a track of genre `want`; fail after 5 s."""
    merger_tx, merger_rx = anyio.create_memory_object_stream[Batch](8)
    inval_tx, inval_rx = anyio.create_memory_object_stream[Batch](8)
    pub_tx, pub_rx = anyio.create_memory_object_stream[list[AnyEvent]](8)
    fanout = Fanout(merger_tx, inval_tx, pub_tx, Progress())
    scanner = make_scanner(path, reader, fanout)
    seen = anyio.Event()

    async def watch_batches() -> None:
        async with merger_rx:
            async for batch in merger_rx:
                tracks = list((batch.replace or {}).values())
                tracks += [e.new for e in batch.events if isinstance(e, TrackModified)]
                if any(t.genre == want for t in tracks):
                    seen.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_batches)
        for rx in (inval_rx, pub_rx):
            tg.start_soon(drain, rx)
        async with anyio.create_task_group() as sources:
            sources.start_soon(scanner.run)
            try:
                with anyio.fail_after(5):
                    await seen.wait()
            finally:
                sources.cancel_scope.cancel()
        await fanout.aclose()


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
    await run_until_read(path, reader, "Final")
    tally.survived += 1
