"""Record events in the journal; once committed, log them and hand them to subscribers.

This is the one road every event takes (track events, scan and flush observer events), so the
hub receives them in the order their transactions committed, which is `seq` order.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

from daemon.events import AnyEvent, ObserverEvent, TrackAdded, TrackModified, TrackRemoved
from daemon.journal import origins
from daemon.journal.hub import EventHub
from daemon.journal.merger import CONSUMER as SNAPSHOT_CONSUMER
from daemon.journal.signal import Signal
from daemon.library import FileStat
from daemon.models import Track
from daemon.stores import journal, tracks
from daemon.stores.writer import Writer

log = structlog.get_logger(__name__)

# A scan with more events than this is logged as a summary, not line by line.
LOG_EACH_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """What a scan tells the database besides its events: which library version it read."""

    stat: FileStat | None
    full: bool
    scanned_at: float
    library_path: str
    # The last transaction of the snapshot's build, whose tracks are in the table already
    # (`Recorder.add_to_build`): it records its position as `journal.SNAPSHOT_BUILT`.
    build: bool = False

    def meta(self) -> dict[str, Any]:
        stat = self.stat
        values: dict[str, Any] = {
            "library_path": self.library_path,
            "library_mtime_ns": stat.mtime_ns if stat is not None else None,
            "library_size": stat.size if stat is not None else None,
            "library_inode": stat.inode if stat is not None else None,
            "last_scan": self.scanned_at,
        }
        if self.full:
            # The seed's name for the same moment is kept beside ours for tools that read it.
            values["last_full_scan"] = values["last_force_scan_time"] = self.scanned_at
        return values


def _log_event(event: AnyEvent) -> None:
    if isinstance(event, TrackModified):
        log.info(
            "track_modified",
            seq=event.seq,
            persistent_id=event.persistent_id,
            # The console line names the track, not just its id.
            track=f"{event.new.artist or '?'} - {event.new.name or '?'}",
            changed=list(event.changed),
            old={k: getattr(event.old, k) for k in event.changed},
            new={k: getattr(event.new, k) for k in event.changed},
            origin=event.origin,
        )
    elif isinstance(event, TrackAdded | TrackRemoved):
        t = event.track
        log.info(
            event.type,
            seq=event.seq,
            persistent_id=t.persistent_id,
            name=t.name,
            artist=t.artist,
            album=t.album,
            origin=event.origin,
        )


def _record(
    conn: sqlite3.Connection, events: Sequence[AnyEvent], scan: ScanRecord | None
) -> list[AnyEvent]:
    now = time.time()
    # Whose write each modification is, decided with the expectations it consumes in this
    # transaction: an event recorded is never tagged later, nor an expectation used twice.
    numbered = journal.append(conn, origins.tag(conn, events, now), now)
    if scan is not None:
        journal.set_meta(conn, scan.meta())
        if scan.build and numbered:
            # The tracks table now reflects the journal up to here (a build emits no track
            # events): the snapshot's position says so, in the same transaction, and so does
            # the build's own position, before which no cursor can be followed (feed.py).
            journal.set_cursor(conn, SNAPSHOT_CONSUMER, numbered[-1].seq, now)
            journal.set_meta(conn, {journal.SNAPSHOT_BUILT: numbered[-1].seq})
            journal.delete_meta(conn, journal.SNAPSHOT_BUILDING)
    return numbered


def _begin_build(conn: sqlite3.Connection) -> None:
    # Nothing changes when an attempt that failed before its first batch is followed by
    # another (a library that stays unreadable): the writer then counts no commit.
    tracks.delete_all(conn)
    if journal.meta_value(conn, journal.SNAPSHOT_BUILDING) is None:
        journal.set_meta(conn, {journal.SNAPSHOT_BUILDING: time.time()})


class Recorder:
    """Appends to the journal through the writer; once committed, hands the events on."""

    def __init__(self, writer: Writer, hub: EventHub, signal: Signal, last_seq: int) -> None:
        self.writer = writer
        self.hub = hub
        self.signal = signal
        self.last_seq = last_seq

    async def record(
        self, events: Sequence[AnyEvent], scan: ScanRecord | None = None, *, quiet: bool = False
    ) -> list[AnyEvent]:
        """Commit `events` (and the scan's metadata); return them numbered.

        Raises DatabaseUnavailable when they could not be committed: then nothing of them was
        recorded or delivered.
        """
        return await self.writer.submit(
            partial(_record, events=events, scan=scan), after=self._after_commit, quiet=quiet
        )

    async def begin_build(self) -> None:
        """Start an attempt at the snapshot's build: in one transaction, clear the rows an
        earlier attempt left (a read that failed, a daemon killed) and mark the build under
        way (`journal.SNAPSHOT_BUILDING`), so that no part of the table is ever taken for a
        snapshot. Raises DatabaseUnavailable when it could not be committed."""
        await self.writer.submit(_begin_build)

    async def add_to_build(self, batch: dict[str, Track]) -> None:
        """Commit a batch of the build's tracks (after those of the batches before it, in
        library order): a transaction of its own, so the writer is never held for the whole
        library. Raises DatabaseUnavailable when it could not be committed."""
        await self.writer.submit(partial(tracks.upsert, tracks=list(batch.values())))

    def _after_commit(self, events: list[AnyEvent]) -> None:
        if not events:
            return
        self.last_seq = events[-1].seq
        if len(events) <= LOG_EACH_LIMIT:
            for event in events:
                _log_event(event)
        self.hub.deliver(events)
        if any(not isinstance(e, ObserverEvent) for e in events):
            self.signal.set()
