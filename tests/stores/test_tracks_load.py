"""The snapshot's order: what tracks.iterate (and tracks.list) hand out."""

from __future__ import annotations

from pathlib import Path

from daemon.events import TrackAdded, TrackModified
from daemon.journal import merger
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


def test_snapshot_order_puts_an_added_track_last_and_keeps_a_replaced_ones_place(
    tmp_path: Path,
) -> None:
    first_build = [_track(i, "Homogenic") for i in range(2, 5)]
    added = _track(1, "Homogenic")  # first in the library's order, but added after the build
    edited = Track(first_build[1].persistent_id, name="Jóga (remastered)")
    db = open_database(tmp_path)
    try:
        with db.transaction() as tx:
            tracks.replace_all(tx, first_build)
            merger.merge(tx, [TrackAdded(added), TrackModified(first_build[1], edited, ("name",))])
        order = [t.persistent_id for t in tracks.iterate(db.read_conn)]
    finally:
        db.close()

    assert order == [*(t.persistent_id for t in first_build), added.persistent_id]
