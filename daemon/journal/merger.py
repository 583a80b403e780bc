"""Apply the journal's track events to the snapshot (the `tracks` table)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from daemon.events import TrackAdded, TrackEvent, TrackModified, TrackRemoved
from daemon.models import Track
from daemon.stores import tracks

CONSUMER = "musicd.snapshot"


def merge(conn: sqlite3.Connection, events: Sequence[TrackEvent]) -> int:
    """Apply events in order (edits in place, additions last); returns the track count."""
    upserts: list[Track] = []
    removals: list[str] = []
    for event in events:
        if isinstance(event, TrackRemoved):
            if upserts:
                tracks.upsert(conn, upserts)
                upserts = []
            removals.append(event.persistent_id)
        else:
            if removals:
                tracks.delete(conn, removals)
                removals = []
            assert isinstance(event, TrackAdded | TrackModified)
            upserts.append(event.track if isinstance(event, TrackAdded) else event.new)
    tracks.upsert(conn, upserts)
    tracks.delete(conn, removals)
    return tracks.count(conn)
