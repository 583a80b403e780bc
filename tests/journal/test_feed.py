"""Cursors and `changes.since` on a real database file, without a daemon: the codec, resync
reasons, trimmed journals, type filters, and the position `tracks.list` reads at."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.events import ObserverEvent, TrackAdded
from daemon.journal import feed
from daemon.journal.invalidator import CONSUMER as INVALIDATOR
from daemon.journal.merger import CONSUMER as SNAPSHOT
from daemon.journal.recorder import ScanRecord
from daemon.journal.recorder import _begin_build as begin_build
from daemon.journal.recorder import _record as record_scan
from daemon.models import Track
from daemon.stores import journal, tracks
from daemon.stores.database import Database, open_database
from daemon.stores.transactions import snapshot


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path)
    yield database
    database.close()


def record(db: Database, events: list[TrackAdded | ObserverEvent]) -> None:
    with db.transaction() as tx:
        journal.append(tx, events, time.time())


def added(n: int) -> list[TrackAdded | ObserverEvent]:
    return [TrackAdded(Track(f"P{i:04d}", name=f"t{i}")) for i in range(n)]


def since(
    db: Database, cursor: str | None, limit: int = 1000, types: list[str] | None = None
) -> dict[str, Any]:
    with snapshot(db.read_conn) as conn:
        return feed.changes_since(conn, db.epoch, cursor, limit, types)


def test_cursor_codec_round_trips_and_refuses_what_it_did_not_make() -> None:
    assert feed.decode_cursor(feed.encode_cursor("abc123", 42)) == ("abc123", 42)
    for bad in ("", "abc", "abc.", ".5", "abc.05", "abc.-1", "abc.1.2", "a b.1", "x" * 65 + ".1"):
        with pytest.raises(feed.CursorError):
            feed.decode_cursor(bad)


def test_the_daemons_own_cursor_names_are_reserved_in_any_case() -> None:
    assert feed.is_reserved(SNAPSHOT)
    assert feed.is_reserved(INVALIDATOR)
    assert feed.is_reserved("MUSICD.Mine")
    assert not feed.is_reserved("my.musicd.app")


def test_a_program_cursor_is_kept_while_it_committed_within_max_age() -> None:
    now = 1_000_000.0
    assert feed.kept_for_program(now - 86400.0, now=now, max_age_days=1)
    assert not feed.kept_for_program(now - 86400.5, now=now, max_age_days=1)


def test_pages_follow_in_order_and_the_last_one_says_no_more(db: Database) -> None:
    record(db, added(5))
    start = since(db, None)
    assert start["resync"] and start["reason"] == "no cursor was given"
    assert start["cursor"] == feed.encode_cursor(db.epoch, 0)
    first = since(db, start["cursor"], limit=2)
    assert [e["seq"] for e in first["events"]] == [1, 2] and first["more"]
    assert first["cursor"] == first["events"][-1]["cursor"]
    rest = since(db, first["cursor"], limit=3)
    assert [e["seq"] for e in rest["events"]] == [3, 4, 5] and not rest["more"]
    assert since(db, rest["cursor"])["events"] == []


def test_a_type_filter_moves_past_what_it_skips(db: Database) -> None:
    record(db, [*added(2), ObserverEvent("scan_finished", {"n": 1})])
    zero = feed.encode_cursor(db.epoch, 0)
    only = since(db, zero, types=["scan_finished"])
    assert [e["type"] for e in only["events"]] == ["scan_finished"]
    assert only["cursor"] == feed.encode_cursor(db.epoch, 3)
    none = since(db, zero, types=["track_removed"])
    assert none["events"] == [] and none["cursor"] == feed.encode_cursor(db.epoch, 3)


def test_excluded_origins_are_left_out_and_the_position_moves_past_them(db: Database) -> None:
    tagged = [TrackAdded(Track("P1"), origin="genre-updater"), TrackAdded(Track("P2"))]
    record(db, [*tagged, ObserverEvent("scan_finished", {"n": 1})])
    with snapshot(db.read_conn) as conn:
        page = feed.changes_since(
            conn, db.epoch, feed.encode_cursor(db.epoch, 0), 10, None,
            exclude_origins=["genre-updater", "other"],
        )  # fmt: skip
    assert [(e["seq"], e.get("origin")) for e in page["events"]] == [(2, None), (3, None)]
    assert page["cursor"] == feed.encode_cursor(db.epoch, 3)


def test_stored_and_live_events_look_the_same(db: Database) -> None:
    event = TrackAdded(Track("P1", name="x"))
    record(db, [event])
    stored = since(db, feed.encode_cursor(db.epoch, 0))["events"][0]
    live = feed.wire_event(TrackAdded(Track("P1", name="x"), seq=1), db.epoch)
    assert stored == live and list(stored) == list(live)


def test_foreign_future_and_trimmed_positions(db: Database) -> None:
    record(db, added(10))
    other = since(db, feed.encode_cursor("0" * 32, 3))
    assert other["resync"] and "another database" in other["reason"]
    with pytest.raises(feed.CursorError, match="ahead of"):
        since(db, feed.encode_cursor(db.epoch, 11))
    with db.transaction() as tx:
        journal.trim(tx, keep_after=10, before_at=0, max_events=6)  # the newest 6 of 10
    assert journal.oldest(db.read_conn) == 5
    # Position 4 still gets everything after it; position 3 lost event 4.
    assert not since(db, feed.encode_cursor(db.epoch, 4))["resync"]
    old = since(db, feed.encode_cursor(db.epoch, 3))
    assert old["resync"] and "no longer holds" in old["reason"]
    assert old["cursor"] == feed.encode_cursor(db.epoch, 4)  # where the journal begins


def test_a_consumer_without_a_cursor_resyncs(db: Database) -> None:
    with snapshot(db.read_conn) as conn:
        answer = feed.changes_since(conn, db.epoch, None, 10, None, consumer="tagger")
    assert answer["resync"] and "not committed" in answer["reason"]


def test_the_snapshot_position_is_the_mergers(db: Database) -> None:
    record(db, added(4))
    assert feed.snapshot_position(db.read_conn) == 0
    with db.transaction() as tx:
        journal.set_cursor(tx, SNAPSHOT, 3, time.time())
    assert feed.snapshot_position(db.read_conn) == 3


def test_a_position_before_the_build_answers_resync_and_tracks_list_says_building(
    db: Database,
) -> None:
    assert feed.building(db.read_conn)
    record(db, [ObserverEvent("scan_started")])
    during = since(db, None)["cursor"]  # what a program is handed while the build reads
    with db.transaction() as tx:
        begin_build(tx)
    with db.transaction() as tx:
        tracks.upsert(tx, [Track("P0001", name="t")])
    # A batch is in the table, the build is not committed: still building.
    assert feed.building(db.read_conn)
    build = ScanRecord(
        stat=None, full=True, scanned_at=time.time(), library_path="Library.xml", build=True
    )
    with db.transaction() as tx:
        [finished] = record_scan(tx, [ObserverEvent("scan_finished")], build)
    assert not feed.building(db.read_conn)
    assert journal.meta_value(db.read_conn, journal.SNAPSHOT_BUILT) == finished.seq
    answer = since(db, during)
    assert answer["resync"] and "built after this cursor" in answer["reason"], answer
    assert answer["cursor"] == feed.encode_cursor(db.epoch, finished.seq)
    assert not since(db, answer["cursor"])["resync"]
