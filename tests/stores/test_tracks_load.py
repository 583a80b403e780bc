"""tracks.load_all: what the daemon holds for as long as it runs."""

from __future__ import annotations

from pathlib import Path

from daemon.models import Track
from daemon.stores import tracks
from daemon.stores.database import open_database


def _track(i: int, album: str | None) -> Track:
    return Track(
        f"{i:016X}",
        name=f"Song {i}",
        artist="Björk",
        album_artist="Björk",
        album=album,
        genre="Electronic",
        compilation=bool(i % 2),
        kind="MPEG audio file",
        track_type="File",
    )


def test_load_all_round_trips_in_library_order_and_shares_repeated_names(tmp_path: Path) -> None:
    written = [_track(i, "Homogenic" if i < 3 else None) for i in range(5)]
    db = open_database(tmp_path)
    try:
        db.writer.execute("BEGIN IMMEDIATE")
        tracks.upsert(db.writer, written)
        db.writer.execute("COMMIT")
        loaded = tracks.load_all(db.reader)
    finally:
        db.close()

    assert list(loaded.values()) == written
    first, second = loaded[written[0].persistent_id], loaded[written[1].persistent_id]
    # One string object per distinct value, not one per row.
    assert first.artist is second.artist is second.album_artist
    assert first.album is second.album
    assert first.genre is second.genre and first.kind is second.kind
    assert first.name is not second.name
