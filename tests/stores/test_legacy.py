"""Importing what came before: old JSON state files, and the original application's cache file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from daemon.stores import cache, journal, tracks
from daemon.stores.database import open_database
from daemon.stores.legacy import import_legacy_state, import_original_cache

NOW = 2_000_000_000.0


def _original(**fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "artist": "Miles Davis",
        "album": "Kind of Blue",
        "year": "1959",
        "source": "musicbrainz",
        "timestamp": 1_700_000_000.0,
        "ttl": None,
        "metadata": {"k": 1},
        "api_response": {"id": "x"},
    }
    entry.update(fields)
    return entry


def test_original_cache_year_decides_success_and_failed_ttl_runs_from_timestamp(
    tmp_path: Path,
) -> None:
    db = open_database(tmp_path)
    try:
        data = {
            "a": _original(),
            "b": _original(album="Sketches", year="", ttl=3600, timestamp=NOW - 60),
            "c": _original(album="Old fail", year=None, ttl=10, timestamp=NOW - 60),
            "d": _original(album="No ttl", year="", ttl=None, timestamp=NOW - 60),
        }
        with db.transaction() as tx:
            report = import_original_cache(tx, data, failed_ttl=3600.0, now=NOW)
        assert report.as_dict() == {
            "imported": 3,
            "skipped": 1,
            "skipped_by_reason": {"expired failed lookup": 1},
        }
        ok = cache.get(db.read_conn, "miles davis", "kind of blue", "MusicBrainz", now=NOW)
        assert ok is not None and ok.success and ok.expires_at is None
        assert ok.data == {"year": "1959", "api_response": {"id": "x"}}
        assert ok.created_at == 1_700_000_000.0 and ok.metadata == {"k": 1}
        failed = cache.get(db.read_conn, "Miles Davis", "Sketches", "musicbrainz", now=NOW)
        assert failed is not None and not failed.success and failed.expires_at == NOW - 60 + 3600
        assert (
            cache.get(db.read_conn, "Miles Davis", "Sketches", "musicbrainz", now=NOW + 3600)
            is None
        )
    finally:
        db.close()


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (7, "not an object"),
        (_original(artist=""), "empty or missing artist/album"),
        (_original(album=None), "empty or missing artist/album"),
        (_original(source="  "), "empty or missing source"),
        (_original(timestamp="yesterday"), "missing timestamp"),
        (_original(ttl="1h"), "ttl is not a number"),
        (_original(metadata=[1]), "metadata is not an object"),
    ],
)
def test_one_bad_original_entry_is_skipped_with_its_reason_never_aborting(
    tmp_path: Path, entry: object, reason: str
) -> None:
    db = open_database(tmp_path)
    try:
        with db.transaction() as tx:
            report = import_original_cache(
                tx, {"bad": entry, "good": _original()}, failed_ttl=60.0, now=NOW
            )
        assert report.imported == 1 and dict(report.skipped) == {reason: 1}
    finally:
        db.close()


def test_old_json_state_files_are_imported_and_moved_aside_not_deleted(tmp_path: Path) -> None:
    fields = ["persistent_id", "name", "artist", "album_artist", "album", "genre", "year",
              "compilation", "disc_number", "track_number", "date_added", "date_modified",
              "kind", "track_type", "disabled"]  # fmt: skip
    row = ["AAAA000000000001", "So What", "Miles Davis", None, "Kind of Blue", None, 1959,
           False, 1, 1, None, None, None, None, False]  # fmt: skip
    (tmp_path / "snapshot.json").write_bytes(
        orjson.dumps({"version": 1, "fields": fields, "tracks": [row, ["bad"]]})
    )
    (tmp_path / "snapshot.meta.json").write_bytes(
        orjson.dumps({"version": 1, "last_seq": 77, "library_size": 5, "last_full_scan": 3.0})
    )
    (tmp_path / "api_cache.json").write_bytes(b"{broken")
    (tmp_path / "delta.json").write_bytes(orjson.dumps({"version": 1}))
    db = open_database(tmp_path)
    try:
        assert import_legacy_state(db.write_conn, tmp_path, failed_ttl=60.0)
        assert [t.persistent_id for t in tracks.iterate(db.read_conn)] == ["AAAA000000000001"]
        meta = journal.meta(db.read_conn)
        assert meta["library_size"] == 5 and meta["last_full_scan"] == 3.0
        assert journal.head(db.read_conn) == 77
        names = sorted(p.name.split(".imported-")[0] for p in tmp_path.glob("*.imported-*"))
        assert names == ["api_cache.json", "delta.json", "snapshot.json", "snapshot.meta.json"]
        assert not import_legacy_state(db.write_conn, tmp_path, failed_ttl=60.0)
    finally:
        db.close()
