"""The build of the snapshot streamed into a real database by the XML reader: batch by batch,
never holding the writer for the whole library, and never leaving a partial table that a later
start or scan could take for a snapshot (a malformed file, a file changed during the read, a
full disk). A daemon killed during the build: tests/e2e/test_first_build_e2e.py."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from daemon.journal import feed, merger
from daemon.journal.hub import EventHub
from daemon.journal.recorder import Recorder
from daemon.journal.signal import Signal
from daemon.library import SnapshotBuild, TrackSink
from daemon.library.fast_xml import FastXmlReader
from daemon.library.plist_tracks import SINK_BATCH
from daemon.library.xml_reader import read_library_xml
from daemon.models import Track
from daemon.stores import cache, journal, tracks
from daemon.stores.database import Database, open_database
from daemon.stores.writer import Writer
from daemon.watch.first_build import FirstBuild
from daemon.watch.scan_status import ScanOutcome
from daemon.watch.scanner import Scanner
from tests.support import SynthLibrary, write_library
from tests.watch.scanner_support import CallReader, fresh_scanner

# Three batches and a part: a build that fails after its second batch has rows to leave.
N_TRACKS = 3 * SINK_BATCH + 100


class Paused:
    """The build a reader streams into, with the read held after its first batch is
    committed until `go` is set (and `on_first` called there, on the read's thread)."""

    def __init__(self, build: FirstBuild, on_first: Any = None) -> None:
        self.build = build
        self.on_first = on_first
        self.first_in = threading.Event()
        self.go = threading.Event()

    def begin(self) -> TrackSink | None:
        sink = self.build.begin()
        if sink is None:
            return None

        def paused(batch: dict[str, Track]) -> None:
            sink(batch)
            if not self.first_in.is_set():
                self.first_in.set()
                if self.on_first is not None:
                    self.on_first()
                self.go.wait(30)

        return paused


@dataclass
class Building:
    scanner: Scanner
    db: Database
    writer: Writer

    async def scan(self) -> ScanOutcome:
        with anyio.fail_after(60):
            return await self.scanner.scan("startup")

    def rows(self) -> list[Track]:
        return list(tracks.iterate(self.db.read_conn))

    def building(self) -> bool:
        return feed.building(self.db.read_conn)

    async def fails_midway(self) -> str:
        """A scan that fails after some of its batches: part of the library in the table, and
        no snapshot. Returns why it failed."""
        outcome = await self.scan()
        assert not outcome.ok
        assert 0 < len(self.rows()) < N_TRACKS
        assert self.building()
        meta = journal.meta(self.db.read_conn)
        assert journal.SNAPSHOT_BUILDING in meta and journal.SNAPSHOT_BUILT not in meta
        return outcome.error or ""

    def built(self, lib: SynthLibrary) -> None:
        """The snapshot is built, and is `lib`: every track once, in the library's order."""
        assert keys(self.rows()) == list(lib.tracks)
        assert not self.building()
        assert journal.SNAPSHOT_BUILDING not in journal.meta(self.db.read_conn)


@asynccontextmanager
async def building(library: Path, state_dir: Path, wrap: Any = None) -> AsyncIterator[Building]:
    """A scanner whose XML reader streams into the build, on a real database; `wrap` wraps
    the build the reader is given."""
    await anyio.Path(state_dir).mkdir(mode=0o700)
    db = await anyio.to_thread.run_sync(open_database, state_dir)
    head = tracks.HeadTracks(db.path, merger.CONSUMER)
    try:
        writer = Writer(db)
        recorder = Recorder(writer, EventHub(), Signal(), last_seq=0)
        build = FirstBuild(recorder, due=True)
        given: SnapshotBuild = wrap(build) if wrap is not None else build
        reader = FastXmlReader(library, snapshot=head, build=given)
        scanner = fresh_scanner(library, reader, recorder, snapshot=head, build=build)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            yield Building(scanner, db, writer)
            tg.cancel_scope.cancel()
    finally:
        head.close()
        db.close()


@pytest.fixture
def lib() -> SynthLibrary:
    return SynthLibrary.generate(N_TRACKS)


def library_file(tmp_path: Path, data: bytes) -> Path:
    library = tmp_path / "Library.xml"
    write_library(library, data)
    return library


def keys(rows: list[Track]) -> list[str]:
    return [t.persistent_id for t in rows]


def without_first(lib: SynthLibrary, n: int) -> SynthLibrary:
    """The library less its first `n` tracks: rows an attempt before left would show."""
    return SynthLibrary({pid: t for i, (pid, t) in enumerate(lib.tracks.items()) if i >= n})


async def test_the_writer_is_never_held_for_the_whole_build(tmp_path: Path) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    library = library_file(tmp_path, lib.render())
    paused: list[Paused] = []

    def wrap(build: FirstBuild) -> Paused:
        paused.append(Paused(build))
        return paused[0]

    async with building(library, tmp_path / "state", wrap) as b:
        outcome: list[ScanOutcome] = []

        async def scan() -> None:
            outcome.append(await b.scan())

        entry = cache.make_entry(
            "Miles Davis", "Kind of Blue", "musicbrainz", success=True, data={},
            metadata=None, now=time.time(), failed_ttl_seconds=60,
        )  # fmt: skip
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan)
            try:
                with anyio.fail_after(30):
                    await anyio.to_thread.run_sync(paused[0].first_in.wait)
                    # A client's write while the build's read is held mid-file: it is
                    # committed between two batches, not after the build.
                    await b.writer.submit(lambda conn: cache.put_many(conn, [entry]))
                assert len(b.rows()) == SINK_BATCH
                assert b.building()  # one batch in: no snapshot yet
            finally:
                paused[0].go.set()
        assert outcome[0].ok
        b.built(lib)


@pytest.mark.slow  # fault injection
async def test_a_read_that_fails_midway_leaves_no_snapshot_and_the_next_attempt_starts_clean(
    tmp_path: Path, lib: SynthLibrary
) -> None:
    data = lib.render()
    # Malformed after the third batch's tracks: the first two are committed by then.
    cut = data.index(b"<key>Persistent ID</key>", len(data) * 3 // 4)
    library = library_file(tmp_path, data[:cut] + b"<oops>" + data[cut:])
    async with building(library, tmp_path / "state") as b:
        assert "<oops>" in await b.fails_midway()
        fixed = without_first(lib, 10)
        write_library(library, fixed.render())
        assert (await b.scan()).ok
        b.built(fixed)


@pytest.mark.slow  # fault injection
async def test_a_file_changed_during_the_build_is_read_again_from_a_clean_table(
    tmp_path: Path, lib: SynthLibrary
) -> None:
    library = library_file(tmp_path, lib.render())
    edited = without_first(lib, 10)
    edited.tracks[next(iter(edited.tracks))]["Album"] = "Renamed"

    def wrap(build: FirstBuild) -> Paused:
        # Music.app saves a new version once the first batch is in; the read goes on.
        paused = Paused(build, on_first=lambda: write_library(library, edited.render()))
        paused.go.set()
        return paused

    async with building(library, tmp_path / "state", wrap) as b:
        assert (await b.scan()).ok
        b.built(edited)
        assert b.rows()[0].album == "Renamed"


@pytest.mark.slow  # fault injection
async def test_a_full_disk_during_the_build_leaves_no_snapshot_and_it_is_built_once_there_is_room(
    tmp_path: Path, lib: SynthLibrary
) -> None:
    library = library_file(tmp_path, lib.render())
    async with building(library, tmp_path / "state") as b:
        conn = b.db.write_conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        # Room for two batches (some 310 pages of 4 KiB each), then SQLite answers SQLITE_FULL.
        conn.execute(f"PRAGMA max_page_count = {pages + 800}")
        assert "SQLITE_FULL" in await b.fails_midway()
        conn.execute("PRAGMA max_page_count = 1073741823")
        assert (await b.scan()).ok
        b.built(lib)


async def test_the_streamed_build_keeps_what_a_whole_read_finds(tmp_path: Path) -> None:
    lib = SynthLibrary.generate(2 * SINK_BATCH + 50)
    pids = list(lib.tracks)
    # A later track repeats the first one's id, in another batch (the first wins)...
    lib.tracks["repeat"] = dict(lib.tracks[pids[0]], Name="Repeat", **{"Track ID": 1})
    # ...and tracks without one get fallback ids, two of them the same Location.
    lib.tracks[pids[-1]]["Location"] = lib.tracks[pids[-2]]["Location"]
    no_pid = {pids[5], pids[-2], pids[-1]}
    library = library_file(tmp_path, lib.render(without_pid=no_pid))
    whole = read_library_xml(library)
    assert whole.duplicate_ids == 1 and whole.without_persistent_id == 3

    async with building(library, tmp_path / "state") as b:
        assert (await b.scan()).ok
        assert b.rows() == list(whole.tracks.values())
        assert b.scanner.status.duplicate_ids == 1
        assert b.scanner.status.without_persistent_id == 3


async def test_the_library_is_never_in_memory_whole(tmp_path: Path) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    library = library_file(tmp_path, lib.render())
    sizes: list[int] = []

    def wrap(build: FirstBuild) -> SnapshotBuild:
        class Counted:
            def begin(self) -> TrackSink | None:
                sink = build.begin()
                assert sink is not None

                def counted(batch: dict[str, Track]) -> None:
                    sizes.append(len(batch))
                    sink(batch)

                return counted

        return Counted()

    async with building(library, tmp_path / "state", wrap) as b:
        with anyio.fail_after(60):
            read = await b.scanner._read_once()
        # The read hands its tracks on a batch at a time and keeps none of them.
        assert read.streamed and read.tracks == {} and read.count() == N_TRACKS
        assert max(sizes) == SINK_BATCH and sum(sizes) == N_TRACKS


async def test_a_read_that_did_not_stream_is_committed_in_batches_all_the_same(
    tmp_path: Path,
) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    library = library_file(tmp_path, lib.render())
    await anyio.Path(tmp_path / "state").mkdir(mode=0o700)
    db = await anyio.to_thread.run_sync(open_database, tmp_path / "state")
    head = tracks.HeadTracks(db.path, merger.CONSUMER)
    try:
        writer = Writer(db)
        recorder = Recorder(writer, EventHub(), Signal(), last_seq=0)
        # The Music.app reader's way: one read that holds every track, not given the build.
        whole = CallReader(lambda: read_library_xml(library))
        scanner = fresh_scanner(library, whole, recorder, snapshot=head)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            with anyio.fail_after(60):
                assert (await scanner.scan("startup")).ok
            tg.cancel_scope.cancel()
        assert [t.persistent_id for t in tracks.iterate(db.read_conn)] == list(lib.tracks)
        # scan_started, the build's first transaction, a batch per 4096 tracks, its last.
        assert writer.status.commits == 1 + 1 + -(-N_TRACKS // SINK_BATCH) + 1
        assert not feed.building(db.read_conn)
    finally:
        head.close()
        db.close()
