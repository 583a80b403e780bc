from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.library import FileStat
from daemon.models import TRACK_FIELDS, Track
from daemon.stores.snapshot import SnapshotMeta, SnapshotStore, snapshot_digest


def _track(i: int, **changes: Any) -> Track:
    values: dict[str, Any] = {
        "name": f"Song {i} \u2013 naïve",
        "artist": "Björk",
        "album_artist": None,
        "album": "Homogenic",
        "genre": "Electronic",
        "year": 1997,
        "compilation": False,
        "disc_number": 1,
        "track_number": i,
        "date_added": "2020-05-16T11:33:56Z",
        "date_modified": "2021-01-02T03:04:05Z",
        "kind": "MPEG audio file",
        "track_type": "File",
        "disabled": i % 2 == 0,
        **changes,
    }
    return Track(f"{i:016X}", **values)


def _saved_store(tmp_path: Path, tracks: list[Track]) -> SnapshotStore:
    store = SnapshotStore(tmp_path)
    for track in tracks:
        store.put(track)
    store.note_scan(FileStat(123, 456, 789), "/lib/Library.xml", full=True, seq=42, now=1000.0)
    assert store.capture().write()
    return store


def _corrupt_files(directory: Path, name: str) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(f"{name}.corrupt-")]


def test_round_trip_keeps_order_and_values(tmp_path: Path) -> None:
    tracks = [_track(i) for i in (5, 1, 3)]
    tracks.append(Track("FFFF000000000000"))  # every optional field empty
    _saved_store(tmp_path, tracks)
    loaded = SnapshotStore(tmp_path)
    assert loaded.load()
    assert list(loaded.tracks.values()) == tracks
    assert not loaded.dirty
    meta = loaded.meta
    assert meta.library_stat() == FileStat(123, 456, 789)
    assert meta.library_path == "/lib/Library.xml"
    assert meta.track_count == 4
    assert meta.last_seq == 42
    assert meta.last_full_scan == meta.last_force_scan_time == meta.last_scan == 1000.0
    assert meta.snapshot_hash == snapshot_digest((tmp_path / "snapshot.json").read_bytes())


def test_files_are_compact_rows_and_owner_only(tmp_path: Path) -> None:
    _saved_store(tmp_path, [_track(1)])
    data = orjson.loads((tmp_path / "snapshot.json").read_bytes())
    assert data["version"] == 1
    assert data["fields"] == list(TRACK_FIELDS)
    assert data["tracks"] == [_track(1).to_row()]
    for name in ("snapshot.json", "snapshot.meta.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_no_files_is_an_empty_store(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    assert not store.load()
    assert len(store) == 0
    assert store.meta == SnapshotMeta()


def test_write_creates_a_missing_state_dir(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "state")
    store.put(_track(1))
    store.capture().write()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_put_replaces_in_place_and_appends_new(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.replace_all({t.persistent_id: t for t in (_track(1), _track(2), _track(3))})
    store.put(_track(2, name="renamed"))
    store.put(_track(4))
    assert [t.track_number for t in store.tracks.values()] == [1, 2, 3, 4]
    assert store.get(_track(2).persistent_id) == _track(2, name="renamed")
    assert store.remove(_track(1).persistent_id) == _track(1)
    assert store.remove("0000000000000000") is None
    assert [t.track_number for t in store.tracks.values()] == [2, 3, 4]
    assert _track(3).persistent_id in store


def test_dirty_tracks_mutations(tmp_path: Path) -> None:
    store = _saved_store(tmp_path, [_track(1)])
    assert not store.dirty
    store.put(_track(1))  # the same values: not a change
    assert not store.dirty
    store.remove("0000000000000000")
    assert not store.dirty
    store.put(_track(2))
    assert store.dirty
    store.capture().write()
    assert not store.dirty


def test_change_during_write_keeps_dirty(tmp_path: Path) -> None:
    store = _saved_store(tmp_path, [_track(1)])
    store.put(_track(2))
    save = store.capture()
    store.put(_track(3))  # after the capture
    assert save.write()
    assert store.dirty
    # The capture is independent of later changes.
    assert len(orjson.loads((tmp_path / "snapshot.json").read_bytes())["tracks"]) == 2


def test_older_capture_never_overwrites_newer(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.put(_track(1))
    old = store.capture()
    store.put(_track(2))
    new = store.capture()
    assert new.write()
    assert not old.write()
    loaded = SnapshotStore(tmp_path)
    assert loaded.load()
    assert len(loaded) == 2


def test_meta_only_change_does_not_rewrite_the_snapshot(tmp_path: Path) -> None:
    store = _saved_store(tmp_path, [_track(1)])
    snapshot = tmp_path / "snapshot.json"
    inode = snapshot.stat().st_ino  # every atomic write makes a new inode
    store.note_scan(FileStat(9, 9, 9), "/lib", full=False, seq=50, now=2000.0)
    assert store.capture().write()
    assert snapshot.stat().st_ino == inode
    loaded = SnapshotStore(tmp_path)
    assert loaded.load()
    assert loaded.meta.library_stat() == FileStat(9, 9, 9)
    assert not loaded.dirty
    # The same holds for a store that was loaded rather than written.
    loaded.note_scan(FileStat(8, 8, 8), "/lib", full=False, seq=51, now=3000.0)
    loaded.capture().write()
    assert snapshot.stat().st_ino == inode
    loaded.put(_track(2))
    loaded.capture().write()
    assert snapshot.stat().st_ino != inode
    again = SnapshotStore(tmp_path)
    assert again.load()
    assert list(again.tracks.values()) == [_track(1), _track(2)]
    assert again.meta.library_stat() == FileStat(8, 8, 8)


def test_album_tracks_match_artist_or_album_artist_normalised(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    nfd = unicodedata.normalize("NFD", "Björk")
    store.put(_track(1, artist=nfd, album="Homogenic"))
    store.put(_track(2, artist="Someone Else", album_artist="BJÖRK", album="homogenic"))
    store.put(_track(3, artist="Björk", album="Post"))
    store.put(_track(4, artist="Björk", album=None))
    store.put(_track(0, artist="Björk", album="Homogenic", disc_number=2))
    assert [t.track_number for t in store.album_tracks("  björk ", "HOMOGENIC")] == [1, 2, 0]
    store.remove(_track(0).persistent_id)
    assert [t.track_number for t in store.album_tracks("  björk ", "HOMOGENIC")] == [1, 2]
    assert [t.track_number for t in store.album_tracks("someone else", "Homogenic")] == [2]
    # The index follows later changes.
    store.put(_track(1, artist="Björk", album="Post"))
    store.put(_track(5, artist="Björk", album="Homogenic"))
    store.remove(_track(2).persistent_id)
    assert [t.track_number for t in store.album_tracks("Björk", "Homogenic")] == [5]
    assert [t.track_number for t in store.album_tracks("Björk", "Post")] == [1, 3]
    store.replace_all({_track(9).persistent_id: _track(9)})
    assert [t.track_number for t in store.album_tracks("Björk", "Homogenic")] == [9]
    assert store.album_tracks("Nobody", "Nothing") == []


def test_note_scan_keeps_full_scan_times_when_not_full(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.note_scan(FileStat(1, 2, 3), "/lib", full=True, seq=5, now=100.0)
    store.note_scan(FileStat(4, 5, 6), "/lib", full=False, seq=9, now=200.0)
    meta = store.meta
    assert (meta.last_full_scan, meta.last_force_scan_time, meta.last_scan) == (100.0, 100.0, 200.0)
    assert meta.library_stat() == FileStat(4, 5, 6)
    assert meta.last_seq == 9
    store.note_scan(None, None, full=False, seq=3, now=300.0)
    assert store.meta.library_stat() is None
    assert store.meta.last_seq == 9  # never goes back


def test_pending_invalidations_round_trip(tmp_path: Path) -> None:
    store = _saved_store(tmp_path, [_track(1)])
    store.add_pending_invalidations([("björk", "homogenic"), ("a", "b"), ("a", "b")])
    assert store.dirty
    store.capture().write()
    loaded = SnapshotStore(tmp_path)
    loaded.load()
    assert loaded.meta.pending_invalidations == [("björk", "homogenic"), ("a", "b")]
    loaded.discard_pending_invalidations([("a", "b")])
    assert loaded.meta.pending_invalidations == [("björk", "homogenic")]
    assert loaded.dirty


@pytest.mark.parametrize(
    ("document", "why"),
    [
        (b'{"version": 1, "fields": [', "torn"),
        (orjson.dumps({"version": 2, "fields": list(TRACK_FIELDS), "tracks": []}), "version"),
        (orjson.dumps({"version": 1, "fields": ["persistent_id", "name"], "tracks": []}), "fields"),
        (orjson.dumps({"version": 1, "fields": list(TRACK_FIELDS), "tracks": [["x"]]}), "row"),
        (orjson.dumps({"version": 1, "fields": list(TRACK_FIELDS), "tracks": {}}), "shape"),
    ],
)
def test_unusable_snapshot_is_quarantined_and_store_starts_empty(
    tmp_path: Path, document: bytes, why: str
) -> None:
    store = _saved_store(tmp_path, [_track(1)])
    store.add_pending_invalidations([("a", "b")])
    store.capture().write()
    (tmp_path / "snapshot.json").write_bytes(document)
    loaded = SnapshotStore(tmp_path)
    with capture_logs() as logs:
        assert not loaded.load()
    assert len(loaded) == 0
    assert len(_corrupt_files(tmp_path, "snapshot.json")) == 1, why
    assert "state_file_quarantined" in [e["event"] for e in logs]
    # What the valid meta owed is not lost with the snapshot.
    assert loaded.meta.last_seq == 42
    assert loaded.meta.pending_invalidations == [("a", "b")]
    assert loaded.meta.library_stat() is None
    assert loaded.meta.last_full_scan is None


def test_missing_meta_keeps_tracks_and_forgets_library_stat(tmp_path: Path) -> None:
    _saved_store(tmp_path, [_track(1), _track(2)])
    (tmp_path / "snapshot.meta.json").unlink()
    loaded = SnapshotStore(tmp_path)
    with capture_logs() as logs:
        assert loaded.load()
    assert list(loaded.tracks.values()) == [_track(1), _track(2)]
    assert loaded.meta.library_stat() is None
    assert loaded.meta.track_count == 2
    assert loaded.dirty  # the next flush writes a matching meta
    [rebuilt] = [e for e in logs if e["event"] == "snapshot_meta_rebuilt"]
    assert rebuilt["reason"] == "missing_or_unusable"


@pytest.mark.parametrize(
    "document",
    [b"{", b'{"version": 1, "track_count": -5}', b'{"track_count": 1}', b'{"version": 2}'],
)
def test_corrupt_meta_is_quarantined_and_tracks_kept(tmp_path: Path, document: bytes) -> None:
    _saved_store(tmp_path, [_track(1)])
    (tmp_path / "snapshot.meta.json").write_bytes(document)
    loaded = SnapshotStore(tmp_path)
    assert loaded.load()
    assert list(loaded.tracks.values()) == [_track(1)]
    assert len(_corrupt_files(tmp_path, "snapshot.meta.json")) == 1
    assert loaded.meta.library_stat() is None


def test_meta_hash_mismatch_keeps_snapshot_tracks_and_meta_history(tmp_path: Path) -> None:
    store = _saved_store(tmp_path, [_track(1)])
    store.add_pending_invalidations([("a", "b")])
    store.capture().write()
    # snapshot.json replaced behind the meta's back by another valid one.
    other = {"version": 1, "fields": list(TRACK_FIELDS), "tracks": [_track(7).to_row()]}
    (tmp_path / "snapshot.json").write_bytes(orjson.dumps(other))
    loaded = SnapshotStore(tmp_path)
    with capture_logs() as logs:
        assert loaded.load()
    assert list(loaded.tracks.values()) == [_track(7)]
    assert loaded.meta.library_stat() is None
    assert loaded.meta.last_seq == 42
    assert loaded.meta.last_full_scan == 1000.0
    assert loaded.meta.pending_invalidations == [("a", "b")]
    assert [e["reason"] for e in logs if e["event"] == "snapshot_meta_rebuilt"] == ["hash_mismatch"]
    loaded.capture().write()
    again = SnapshotStore(tmp_path)
    with capture_logs() as logs:
        assert again.load()
    assert [e["verified"] for e in logs if e["event"] == "snapshot_loaded"] == [True]
    assert not again.dirty


def test_unverified_rows_with_wrong_types_are_quarantined(tmp_path: Path) -> None:
    # A hand-edited file (no matching meta) is checked value by value.
    row = _track(1).to_row()
    row[TRACK_FIELDS.index("year")] = "1997"
    doc = {"version": 1, "fields": list(TRACK_FIELDS), "tracks": [row]}
    (tmp_path / "snapshot.json").write_bytes(orjson.dumps(doc))
    loaded = SnapshotStore(tmp_path)
    assert not loaded.load()
    assert len(_corrupt_files(tmp_path, "snapshot.json")) == 1


def test_crash_between_meta_and_snapshot_keeps_pending_invalidations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _saved_store(tmp_path, [_track(1)])
    store.put(_track(2))
    store.add_pending_invalidations([("björk", "homogenic")])
    real_replace = os.replace

    def crash_on_snapshot(src: Any, dst: Any) -> None:
        if Path(dst).name == "snapshot.json":
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_snapshot)
    with pytest.raises(OSError):
        store.capture().write()
    monkeypatch.undo()
    assert store.dirty
    loaded = SnapshotStore(tmp_path)
    assert loaded.load()
    assert list(loaded.tracks.values()) == [_track(1)]  # the older snapshot
    assert loaded.meta.library_stat() is None  # so a full reconciliation follows
    assert loaded.meta.pending_invalidations == [("björk", "homogenic")]
    # The interrupted save is retried in full.
    assert store.capture().write()
    assert not store.dirty
    reloaded = SnapshotStore(tmp_path)
    assert reloaded.load()
    assert list(reloaded.tracks.values()) == [_track(1), _track(2)]
    assert reloaded.meta.library_stat() == FileStat(123, 456, 789)
