"""A program that starts while the daemon builds its snapshot (the first start, or the rebuild
after a corrupt database) does what the README says ("list every page, then follow
`changes.since`") and ends with exactly the library, an edit made during the build included."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import pytest

from daemon.client import MusicdClient
from daemon.journal import feed
from daemon.stores import journal
from daemon.stores.schema import DB_FILE, connect
from tests.support import (
    DaemonProc,
    SynthLibrary,
    album_of,
    artist_of,
    daemon_env,
    db_meta,
    wait_for,
    write_library,
)

pytestmark = pytest.mark.timeout(240)

BIG = 60_000
Rows = dict[str, dict[str, Any]]


class Program:
    """A program that keeps its own copy of the library, as the README tells it to."""

    def __init__(self, d: DaemonProc, cursor: str | None = None) -> None:
        self.d = d
        self.cursor = cursor
        self.library: Rows = {}
        self.saw_building = False
        self.resyncs: list[str] = []

    def relist(self, client: MusicdClient) -> None:
        self.library = {}
        first: str | None = None
        for page in client.iter_track_pages(limit=10000):
            first = first or page["cursor"]
            self.saw_building = self.saw_building or page["building"]
            self.library.update((t["persistent_id"], t) for t in page["tracks"])
        self.cursor = first

    def follow_once(self, client: MusicdClient) -> bool:
        """One round of `changes.since`; True when it was caught up (no resync, no more)."""
        batch = client.changes_since(self.cursor, limit=10000)
        if batch["resync"]:
            self.resyncs.append(batch["reason"])
            self.relist(client)
            return False
        for event in batch["events"]:
            if event["type"] in ("track_added", "track_modified"):
                self.library[event["track"]["persistent_id"]] = event["track"]
            elif event["type"] == "track_removed":
                self.library.pop(event["persistent_id"], None)
        self.cursor = batch["cursor"]
        return not batch["more"]

    def follow_until(self, expected: Rows, timeout: float = 120) -> None:
        with self.d.client() as client:

            def caught_up() -> bool:
                return self.follow_once(client) and self.library == expected

            wait_for(caught_up, timeout, what=f"the program's copy to equal the library {self}")

    def __repr__(self) -> str:
        return f"(has {len(self.library)} tracks, resyncs {self.resyncs})"


def _edit_during_the_build(d: DaemonProc, lib: SynthLibrary, album: int) -> Rows:
    """Rename an album (in `lib` too) as soon as the daemon reads the library; returns the
    tracks table the edited library makes."""

    def reading() -> bool:
        with d.client() as client:
            status = client.status()
        # On a fast machine the build may be over before a look sees it: then the edit comes
        # after it, which must not be lost either.
        return status["scan_in_progress"] is not None or status["last_scan_at"] is not None

    wait_for(reading, 60, what="the build to start reading")
    for pid in lib.album_pids(artist_of(album), album_of(album)):
        lib.tracks[pid]["Album"] = f"{album_of(album)} (Remastered)"
    write_library(d.library, lib.render())
    return lib.expected_rows()


@pytest.mark.slow
def test_a_program_started_during_the_first_build_ends_with_the_library() -> None:
    lib = SynthLibrary.generate(BIG)
    with daemon_env(lib.render(), library={"settle_seconds": 0.2}) as d:
        d.start(wait_ready=False)
        d.wait_socket(timeout=60)
        program = Program(d)
        with d.client() as client:
            program.follow_once(client)  # no cursor yet: resync, list every page
        edited = _edit_during_the_build(d, lib, 3)
        program.follow_until(edited)
        assert program.saw_building, "the program did not run during the build"
        d.wait_log("snapshot_built", timeout=60)
        # The edit is in the build or in the journal, never lost: the tracks table says so too.
        wait_for(lambda: d.snapshot_tracks() == edited, 60, what="the edit in the tracks table")
        program.follow_until(edited)

        # The same after the database is found damaged, set aside and rebuilt from the library.
        status, _ = d.stop()
        assert status == 0
        (d.state_dir / "musicd.db").write_bytes(b"this is not a database" * 1000)
        for suffix in ("-wal", "-shm"):
            (d.state_dir / f"musicd.db{suffix}").unlink(missing_ok=True)
        d.start(wait_ready=False)
        d.wait_socket(timeout=60)
        again = Program(d, cursor=program.cursor)  # a cursor of the database now set aside
        with d.client() as client:
            again.follow_once(client)
        assert again.resyncs, again
        rebuilt = _edit_during_the_build(d, lib, 4)
        again.follow_until(rebuilt)
        wait_for(lambda: d.snapshot_tracks() == rebuilt, 60, what="the edit in the tracks table")
        again.follow_until(rebuilt)


def test_a_cursor_handed_out_before_the_build_answers_resync() -> None:
    # A small library: the build's position is what matters, not its length.
    lib = SynthLibrary.generate(50)
    with daemon_env(lib.render()) as d:
        d.start_built()
        with d.client() as client:
            page = client.tracks_list()
            assert page["building"] is False
            assert len(page["tracks"]) == 50
            # The position before the build (the database's first): told to resync.
            early = page["cursor"].rsplit(".", 1)[0] + ".0"
            batch = client.changes_since(early)
            assert batch["resync"] and "built" in batch["reason"], batch
            # From the first page's cursor: nothing to resync.
            assert not client.changes_since(page["cursor"])["resync"]


def _part_built(d: DaemonProc) -> bool:
    """Whether the build under way has committed some of its batches, and not all."""
    try:
        meta = db_meta(d.state_dir)
    except sqlite3.OperationalError:
        return False  # the file is made, its tables not yet
    return journal.SNAPSHOT_BUILDING in meta and 0 < len(d.snapshot_tracks()) < BIG


@pytest.mark.slow
def test_a_daemon_killed_during_the_build_leaves_no_snapshot_and_builds_clean_again() -> None:
    lib = SynthLibrary.generate(BIG)
    with daemon_env(lib.render()) as d:
        d.start(wait_ready=False)
        wait_for(lambda: _part_built(d), 60, what="some of the build's batches committed")
        d.kill9()
        # What the next start finds: part of a library, and the build still to be made.
        assert 0 < len(d.snapshot_tracks()) < BIG
        meta = db_meta(d.state_dir)
        assert journal.SNAPSHOT_BUILT not in meta and "last_full_scan" not in meta
        with contextlib.closing(connect(d.state_dir / DB_FILE, read_only=True)) as conn:
            assert feed.building(conn)

        # Tracks the cut-short build wrote are gone from the file: no row of theirs may stay.
        fewer = SynthLibrary({p: t for i, (p, t) in enumerate(lib.tracks.items()) if i >= 100})
        write_library(d.library, fewer.render())
        d.start(wait_ready=False)
        d.wait_socket(timeout=60)
        pages: list[dict[str, Any]] = []

        def built() -> bool:
            with d.client() as client:
                pages.append(client.tracks_list(limit=10))
            return not pages[-1]["building"]

        wait_for(built, 120, what="the build after the kill")
        # While it was building, no page showed the rows of either build.
        assert all(not page["tracks"] for page in pages if page["building"]), pages
        # Every track once, in the library's order.
        assert list(d.snapshot_tracks().items()) == list(fewer.expected_rows().items())
        assert journal.SNAPSHOT_BUILDING not in db_meta(d.state_dir)
