"""The database file: schema and migrations, a damaged file set aside, the tables' functions."""

from __future__ import annotations

import sqlite3
import unicodedata
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.errors import StateError
from daemon.events import ObserverEvent, TrackAdded, TrackModified, TrackRemoved
from daemon.models import APP_ID_FIELDS, TRACK_FIELDS, Track
from daemon.stores import cache, expectations, journal, tracks
from daemon.stores.database import checkpoint, open_database, salvage_cache
from daemon.stores.schema import MIGRATIONS, SCHEMA_VERSION, check_and_migrate, connect
from daemon.stores.transactions import transaction


def _in_tx(conn: sqlite3.Connection, sql_fn: object) -> None:
    with transaction(conn):
        sql_fn(conn)  # type: ignore[operator]


def _entry(artist: str, album: str, source: str = "musicbrainz", **kw: object) -> cache.CacheEntry:
    defaults: dict[str, object] = {
        "success": True,
        "data": {"year": 1959},
        "metadata": None,
        "now": 1000.0,
        "failed_ttl_seconds": 60.0,
    }
    defaults.update(kw)
    return cache.make_entry(artist, album, source, **defaults)  # type: ignore[arg-type]


def test_migration_to_1_creates_every_table_and_an_epoch(tmp_path: Path) -> None:
    conn = connect(tmp_path / "t.db")
    MIGRATIONS[0](conn)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "tracks", "api_cache", "journal", "cursors"} <= names
    assert len(journal.meta(conn)["epoch"]) == 32


def test_migration_to_2_adds_the_music_app_ids_empty_and_keeps_the_tracks(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = connect(path)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    old_columns = ", ".join(n for n in TRACK_FIELDS if n not in APP_ID_FIELDS)
    conn.execute(
        f"INSERT INTO tracks ({old_columns}) VALUES "
        "('P1', 'So What', 'Miles Davis', NULL, 'Kind of Blue', NULL, 1959, 0, 1, 1, NULL, "
        "NULL, NULL, NULL, 0)"
    )
    assert check_and_migrate(conn, path) == 1
    assert tracks.get(conn, "P1") == Track(
        "P1", "So What", "Miles Davis", album="Kind of Blue", year=1959, disc_number=1,
        track_number=1,
    )  # fmt: skip
    tracks.upsert(conn, [Track("P2", track_id=7, music_id=8, database_id=9)])
    for field, value in (("track_id", 7), ("music_id", 8), ("database_id", 9)):
        found = tracks.get_by(conn, field, value)
        assert found is not None and found.persistent_id == "P2"
    assert tracks.get_by(conn, "music_id", 1234) is None
    conn.close()


def test_migration_to_3_gives_every_stored_track_event_a_null_origin(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = connect(path)
    for target, migrate in enumerate(MIGRATIONS[:2], start=1):
        migrate(conn)
        conn.execute(f"PRAGMA user_version = {target}")
    old = Track("P1", name="So What", artist="Miles Davis", album="Kind of Blue")
    new = Track("P1", name="So What", artist="Miles Davis", album="Kind of Blue", year=1959)
    before = [
        TrackAdded(old, seq=1),
        TrackModified(old, new, ("year",), seq=2),
        TrackRemoved(old, seq=3),
        ObserverEvent("scan_finished", {"added": 1}, seq=4, at=12.5),
    ]
    for event in before:
        # As schema 2 stored them: the wire form without seq, and no origin anywhere.
        body = {k: v for k, v in event.to_wire().items() if k not in ("seq", "origin")}
        conn.execute(
            "INSERT INTO journal (seq, type, persistent_id, at, body) VALUES (?, ?, ?, ?, ?)",
            (event.seq, event.type, "P1", 1.0, orjson.dumps(body).decode()),
        )
    assert check_and_migrate(conn, path) == 2
    rows = journal.read(conn, 0, 10)
    assert [journal.event_from_row(*row) for row in rows] == before
    assert [journal.wire_from_row(seq, body) for seq, _, body in rows] == [
        e.to_wire() for e in before
    ]
    assert "origin" not in journal.wire_from_row(4, rows[3][2])
    assert conn.execute("SELECT count(*) FROM journal WHERE origin IS NULL").fetchone()[0] == 4
    assert expectations.pending(conn) == 0  # and the announced writes' table is there, empty
    conn.close()


def test_new_database_is_at_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        assert db.created
        assert db.write_conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.write_conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    again = open_database(tmp_path)
    try:
        assert not again.created and again.epoch == db.epoch
    finally:
        again.close()


def test_a_database_from_a_newer_musicd_is_refused_not_replaced(tmp_path: Path) -> None:
    open_database(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "musicd.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer musicd"):
        open_database(tmp_path)
    assert not list(tmp_path.glob("musicd.db.corrupt-*"))


@pytest.mark.parametrize(
    "content", [b"", b"garbage" * 1000, b"SQLite format 3\x00" + b"\xff" * 600]
)
def test_a_file_that_is_not_a_database_is_moved_aside_and_rebuilt(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / "musicd.db").write_bytes(content)
    with capture_logs() as logs:
        db = open_database(tmp_path)
    try:
        if content:
            assert db.moved_aside is not None and db.moved_aside.read_bytes() == content
            assert [e for e in logs if e["event"] == "database_corrupt"]
        assert db.write_conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        db.close()


def test_salvage_copies_the_cached_answers_of_a_damaged_file(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = open_database(tmp_path / "old")
    _in_tx(old.write_conn, lambda c: cache.put_many(c, [_entry("A", "B"), _entry("C", "D")]))
    old.close()
    new = open_database(tmp_path / "new")
    try:
        assert salvage_cache(tmp_path / "old" / "musicd.db", new.write_conn) == 2
        assert cache.get(new.read_conn, "a", "b", "MusicBrainz", now=2000.0) is not None
    finally:
        new.close()


def test_journal_seq_is_never_handed_out_again_after_a_trim_and_a_reopen(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    first = []
    _in_tx(
        db.write_conn,
        lambda c: first.extend(journal.append(c, [ObserverEvent("x", at=1.0)] * 3, 1.0)),
    )
    assert [e.seq for e in first] == [1, 2, 3]
    _in_tx(db.write_conn, lambda c: journal.trim(c, keep_after=3, before_at=10.0, max_events=1000))
    assert journal.oldest(db.write_conn) is None
    db.close()
    db = open_database(tmp_path)
    try:
        later = []
        _in_tx(db.write_conn, lambda c: later.extend(journal.append(c, [ObserverEvent("y")], 2.0)))
        assert later[0].seq == 4 and journal.head(db.read_conn) == 4
    finally:
        db.close()


def test_trim_keeps_what_a_consumer_still_needs(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        _in_tx(db.write_conn, lambda c: journal.append(c, [ObserverEvent("x", at=1.0)] * 10, 1.0))
        dropped: list[int] = []
        _in_tx(
            db.write_conn,
            lambda c: dropped.append(journal.trim(c, keep_after=4, before_at=5.0, max_events=1000)),
        )
        assert dropped == [4] and journal.oldest(db.read_conn) == 5
    finally:
        db.close()


def test_events_read_back_from_the_journal_equal_what_was_recorded(tmp_path: Path) -> None:
    old = Track("AAAA000000000001", name="So What", artist="Miles Davis", album="Kind of Blue")
    new = Track("AAAA000000000001", name="So What", artist="Miles Davis", album="KoB", year=1959)
    events = [
        TrackAdded(new),
        TrackModified(old, new, old.changed_fields(new)),
        TrackRemoved(Track("AAAA000000000002", name="N", artist="A", album_artist="B", album="C")),
        ObserverEvent("scan_finished", {"added": 1}, at=12.5),
    ]
    db = open_database(tmp_path)
    try:
        numbered: list[object] = []
        _in_tx(db.write_conn, lambda c: numbered.extend(journal.append(c, events, 3.0)))
        rows = journal.read(db.read_conn, 0, 10)
        assert [journal.event_from_row(*row) for row in rows] == numbered
        assert [journal.wire_from_row(seq, body) for seq, _, body in rows] == [
            e.to_wire()
            for e in numbered  # type: ignore[attr-defined]
        ]
        assert [r[1] for r in journal.read(db.read_conn, 0, 10, types=["track_removed"])] == [
            "track_removed"
        ]
    finally:
        db.close()


def test_cache_keys_nfd_and_nfc_names_alike_and_expires_failed_lookups(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        nfd = unicodedata.normalize("NFD", "Björk")
        _in_tx(
            db.write_conn,
            lambda c: cache.put_many(
                c,
                [
                    _entry(nfd, "Homogenic"),
                    _entry("Björk", "Homogenic", "discogs", success=False, data=None),
                    _entry("X", "Y", "lastfm", ttl_seconds=10.0),
                ],
            ),
        )
        assert (
            cache.get(db.read_conn, "björk", " HOMOGENIC ", "musicbrainz", now=5000.0) is not None
        )
        assert cache.get(db.read_conn, "Björk", "Homogenic", "discogs", now=1059.0) is not None
        assert cache.get(db.read_conn, "Björk", "Homogenic", "discogs", now=1060.0) is None
        assert cache.counts(db.read_conn, 1001.0) == {
            "discogs": (0, 1),
            "lastfm": (1, 0),
            "musicbrainz": (1, 0),
        }
        removed: list[int] = []
        _in_tx(db.write_conn, lambda c: removed.append(cache.cleanup_expired(c, 1060.0)))
        assert removed == [2]
        _in_tx(
            db.write_conn,
            lambda c: removed.append(cache.invalidate_keys(c, [("björk", "homogenic")])),
        )
        assert removed[-1] == 1 and cache.counts(db.read_conn, 0.0) == {}
    finally:
        db.close()


def test_tracks_keep_snapshot_order_and_albums_match_either_artist(tmp_path: Path) -> None:
    a = Track(
        "B000000000000001",
        name="2",
        artist="Guest",
        album_artist="Band",
        album="LP",
        track_number=2,
    )
    b = Track("A000000000000002", name="1", artist="Band", album="LP", track_number=1)
    c = Track("C000000000000003", name="x", album="No Artist")
    db = open_database(tmp_path)
    try:
        _in_tx(db.write_conn, lambda conn: tracks.upsert(conn, [a, b, c]))
        _in_tx(
            db.write_conn,
            lambda conn: tracks.upsert(
                conn,
                [
                    Track(
                        a.persistent_id,
                        name="2b",
                        artist="Guest",
                        album_artist="Band",
                        album="LP",
                        track_number=2,
                    )
                ],
            ),
        )
        assert [t.persistent_id for t in tracks.iterate(db.read_conn)] == [
            a.persistent_id,
            b.persistent_id,
            c.persistent_id,
        ]
        assert [t.name for t in tracks.album(db.read_conn, "band", "lp")] == ["1", "2b"]
        assert [t.name for t in tracks.album(db.read_conn, "Guest", "LP")] == ["2b"]
        assert [t.name for t in tracks.album(db.read_conn, "", "no artist")] == ["x"]
        assert [t.persistent_id for t in tracks.page(db.read_conn, "A5", 2)] == [
            a.persistent_id,
            c.persistent_id,
        ]
        assert tracks.get(db.read_conn, b.persistent_id) == b
    finally:
        db.close()


def test_invalidating_an_album_costs_its_entries_never_a_scan(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    statements: list[str] = []
    try:
        _in_tx(db.write_conn, lambda conn: cache.put_many(conn, [_entry("Band", "LP")]))
        db.write_conn.set_trace_callback(statements.append)
        _in_tx(db.write_conn, lambda conn: cache.invalidate_keys(conn, [_entry("Band", "LP").key]))
        db.write_conn.set_trace_callback(None)
        (delete,) = [sql for sql in statements if sql.startswith("DELETE")]
        plan = [row[-1] for row in db.write_conn.execute(f"EXPLAIN QUERY PLAN {delete}")]
    finally:
        db.close()
    assert plan and all(step.startswith("SEARCH") for step in plan), plan


def test_checkpoint_folds_the_wal_into_the_file(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        _in_tx(db.write_conn, lambda c: cache.put_many(c, [_entry("A", "B")]))
        done = checkpoint(db.write_conn, db.path, truncate=True)
        assert not done["busy"]
        assert (tmp_path / "musicd.db-wal").stat().st_size == 0
    finally:
        db.close()
