"""The build of the snapshot (the first start, or the rebuild of a damaged database), streamed
into the database: the library is never in memory whole, and the one writer is never held for
the whole build.

A full read hands its tracks over in batches as it parses them (`SnapshotBuild`); each batch
is committed in a transaction of its own before the read goes on, so a client's write waits
for one batch at most. Each full read while the build is due is an attempt at it, and begins
with a transaction that clears what an attempt before it left and marks the build under way
(`Recorder.begin_build`): a read that fails (a malformed file, one that changed while it was
read, a full disk) or a daemon killed leaves only rows no one takes for a snapshot
(`feed.building`), and the next attempt starts clean. The scanner records the attempt that
read the whole file: the build's last transaction (`ScanRecord.build`).
"""

from __future__ import annotations

import anyio.from_thread
import anyio.lowlevel
import structlog

from daemon.journal.recorder import Recorder
from daemon.library import LibraryRead, TrackSink
from daemon.library.plist_tracks import SINK_BATCH
from daemon.models import Track

__all__ = ["FirstBuild"]

log = structlog.get_logger(__name__)


class FirstBuild:
    """The `SnapshotBuild` the reader streams into, and what the scanner asks of the build.

    Made on the event loop, once, before the reader and the scanner (both get it); `due` is
    whether the snapshot is still to be built (`feed.building` at start), and the scanner
    calls `finished()` once a build is recorded.
    """

    def __init__(self, recorder: Recorder, *, due: bool) -> None:
        self.recorder = recorder
        self.due = due
        # The reads that stream into the build run on their own thread (`ReadJob`).
        self._token = anyio.lowlevel.current_token()

    def begin(self) -> TrackSink | None:
        """On a full read's thread: see `SnapshotBuild.begin`."""
        if not self.due:
            return None
        anyio.from_thread.run(self.recorder.begin_build, token=self._token)
        return self._add

    def _add(self, batch: dict[str, Track]) -> None:
        # The read waits for each batch's commit: at most one batch is held beyond the parser.
        anyio.from_thread.run(self.recorder.add_to_build, batch, token=self._token)

    async def add_read(self, tracks: dict[str, Track]) -> None:
        """A new attempt at the build with the tracks of a read that did not stream them (the
        Music.app reader's: its one read holds every track anyway), committed in batches all
        the same, so the writer is never held for the whole library. Raises
        DatabaseUnavailable when a transaction could not be committed."""
        await self.recorder.begin_build()
        batch: dict[str, Track] = {}
        for key, track in tracks.items():
            batch[key] = track
            if len(batch) == SINK_BATCH:
                await self.recorder.add_to_build(batch)
                batch = {}
        if batch:
            await self.recorder.add_to_build(batch)

    def finished(self, read: LibraryRead, duration_ms: float) -> None:
        """The build was recorded (from `read`): later full reads are compared with the
        snapshot."""
        self.due = False
        log.info(
            "snapshot_built",
            tracks=read.count(),
            duration_ms=duration_ms,
            without_persistent_id=read.without_persistent_id,
        )
