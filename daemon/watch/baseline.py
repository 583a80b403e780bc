"""The scanner's baseline: the library as the journal's head describes it, never held whole.

A new diff never waits for, or races with, the consumers still applying the previous one: the
baseline is the tracks of the last recorded scan, which is the snapshot (the `tracks` table)
with the journal's events its merger has yet to apply on top (`stores.tracks.at_head`). An
incremental read names the few tracks that changed, and only their former selves are loaded;
a full read is compared with every track, loaded for that comparison only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from daemon.events import TrackEvent
from daemon.library import KnownTracks, LibraryRead
from daemon.library.differ import diff_changes, diff_tracks
from daemon.models import Track


class Snapshot(KnownTracks, Protocol):
    """The tracks at the journal's head (`stores.tracks.HeadTracks`). Each method raises
    DatabaseUnavailable when the database cannot be read."""

    def each(self) -> Iterator[Track]:
        """Every track, in snapshot order."""
        ...


def diff_read(read: LibraryRead, snapshot: Snapshot, held: Mapping[str, Track]) -> list[TrackEvent]:
    """The read's events against the baseline (on a worker thread: it reads the database).

    `held`: the tracks whose removal the removal guard holds back. They are still in the
    baseline but no longer in an incremental reader's memory, so for a read of the changes
    since the read before it they count as gone again until their tracks come back. A full
    read compared with the snapshot (which still holds them) names them itself.
    """
    if read.gone is None:
        return diff_tracks(snapshot.each(), read.tracks)
    gone = read.gone
    if not read.full:
        gone = list(dict.fromkeys([*gone, *(pid for pid in held if pid not in read.tracks)]))
    old = snapshot.get([*read.tracks, *gone])
    return diff_changes(old, read.tracks, gone)
