"""HeadTracks: the scanner's baseline, read from the database at the journal's head."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from daemon.events import TrackAdded, TrackModified, TrackRemoved
from daemon.journal import merger
from daemon.journal.follow import apply_round
from daemon.models import Track
from daemon.stores import journal, tracks
from daemon.stores.database import Database, open_database
from daemon.stores.writer import DatabaseUnavailable


def _in_tx(db: Database, work: Callable[..., object]) -> None:
    with db.transaction() as tx:
        work(tx)


@contextmanager
def _head(tmp_path: Path) -> Iterator[tuple[Database, tracks.HeadTracks]]:
    """A new database and the merger's head over it, both closed afterwards."""
    db = open_database(tmp_path)
    head = tracks.HeadTracks(db.path, merger.CONSUMER)
    try:
        yield db, head
    finally:
        head.close()
        db.close()


def _merge(db: Database) -> None:
    _in_tx(db, lambda c: apply_round(c, merger.CONSUMER, merger.merge))


def test_head_is_the_snapshot_with_the_unmerged_events_on_top(tmp_path: Path) -> None:
    a, b, c = Track("A" * 16, name="a"), Track("B" * 16, name="b"), Track("C" * 16, name="c")
    with _head(tmp_path) as (db, head):
        _in_tx(db, lambda conn: journal.append(conn, [TrackAdded(a), TrackAdded(b)], time.time()))
        _merge(db)
        b2 = Track(b.persistent_id, name="b, renamed")
        events = [TrackModified(b, b2, ("name",)), TrackRemoved(a), TrackAdded(c)]
        _in_tx(db, lambda conn: journal.append(conn, events, time.time()))
        # Not merged yet: the table still holds a and b as they were.
        assert list(tracks.iterate(db.read_conn)) == [a, b]
        want = {b.persistent_id: b2, c.persistent_id: c}
        assert head.get([a.persistent_id, b.persistent_id, c.persistent_id, "D" * 16]) == want
        assert list(head.each()) == [b2, c]
        assert list(head.keys()) == [b.persistent_id, c.persistent_id]
        _merge(db)
        assert list(head.each()) == [b2, c]


def test_head_follows_a_renewed_wal(tmp_path: Path) -> None:
    with _head(tmp_path) as (db, head):
        assert list(head.keys()) == []
        (tmp_path / "musicd.db-wal").unlink()
        old_reader = db.renew_wal()
        assert old_reader is not None
        old_reader.close()
        track = Track("E" * 16, name="after the new WAL")
        _in_tx(db, lambda conn: tracks.upsert(conn, [track]))
        assert head.get([track.persistent_id]) == {track.persistent_id: track}


def test_a_close_during_a_read_waits_for_its_end(tmp_path: Path) -> None:
    # At shutdown a read left running on its thread may still be comparing with the snapshot:
    # closing the connection under its statement would crash SQLite.
    with _head(tmp_path) as (db, head):
        written = [Track(f"{i:016X}", name=str(i)) for i in range(3)]
        _in_tx(db, lambda conn: tracks.upsert(conn, written))
        reading = head.each()
        first = next(reading)
        head.close()
        assert [first, *reading] == written
        with pytest.raises(DatabaseUnavailable, match="stopping"):
            head.get([first.persistent_id])
