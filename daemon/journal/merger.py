"""Apply the journal's track events to the snapshot (the `tracks` table)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import structlog

from daemon.events import TrackAdded, TrackEvent, TrackModified, TrackRemoved
from daemon.journal.follow import Round
from daemon.models import Track
from daemon.stores import tracks

log = structlog.get_logger(__name__)

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


def report(done: Round[int]) -> None:
    """Log a round that applied track events."""
    if done.applied:
        log.info("snapshot_merged", events=done.applied, tracks=done.result, seq=done.last_seq)
