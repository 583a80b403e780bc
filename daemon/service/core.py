"""What the running daemon offers its tasks and the control server: reads, acknowledged writes,
checkpoints and status, all on the one database (checkpoints and cleanup are in housekeeping.py).

Reads that touch a row or an album run on the event loop through the read connection (WAL
readers never wait for the writer); everything that changes the database goes through the
`Writer` and is answered only after its transaction committed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import structlog

from daemon import __version__
from daemon.config import Config
from daemon.errors import StateError
from daemon.journal import feed
from daemon.journal.consumers import JournalConsumers
from daemon.journal.hub import EventHub
from daemon.journal.recorder import Recorder
from daemon.journal.triggers import Triggers
from daemon.service.cache_api import CacheApi
from daemon.service.housekeeping import Housekeeping
from daemon.service.programs import ProgramApi
from daemon.stores import tracks
from daemon.stores.database import Database
from daemon.stores.writer import Writer

if TYPE_CHECKING:
    from daemon.watch.library_scan import LibraryScan
    from daemon.watch.scan_status import ScanOutcome
    from daemon.watch.watcher import LibraryWatcher

log = structlog.get_logger(__name__)


@dataclass
class SharedScan:
    """A requested scan not started yet; the requests that came meanwhile wait for it."""

    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: ScanOutcome | None = None


@dataclass
class Service:
    """The daemon's reads, writes and status for the control server; made by `app.build`."""

    config: Config
    db: Database
    hub: EventHub
    writer: Writer
    recorder: Recorder
    programs: ProgramApi
    cache: CacheApi
    housekeeping: Housekeeping
    consumers: JournalConsumers
    triggers: Triggers
    scan: LibraryScan
    watcher: LibraryWatcher
    # The scope of the sources (watcher, scanner, control server): cancelled to shut down.
    stop_sources: anyio.CancelScope
    started_at: float = field(default_factory=time.time)
    shutting_down: bool = False
    _next_rescan: SharedScan | None = None

    @property
    def socket_path(self) -> Path:
        return self.config.control.socket

    @property
    def last_seq(self) -> int:
        return self.recorder.last_seq

    @property
    def epoch(self) -> str:
        return self.db.epoch

    # -- lifecycle ---------------------------------------------------------------------------

    def request_shutdown(self, reason: str = "requested") -> None:
        if not self.shutting_down:
            log.info("shutdown_requested", reason=reason)
        self.shutting_down = True
        self.stop_sources.cancel()

    async def rescan(self, *, accept_removals: bool = False) -> ScanOutcome:
        """A scan now. Requests that come while a requested scan waits for its turn share it
        (its outcome is theirs: it starts after they asked), so any number of them costs at
        most the scan running and one more."""
        scanner = self.scan.scanner
        if scanner is None:
            raise StateError("the daemon is still starting; try again in a moment")
        if accept_removals:
            # Its own: it applies what the others would hold back.
            return await scanner.scan("requested", accept_removals=True)
        shared = self._next_rescan
        if shared is not None:
            await shared.done.wait()
            if shared.outcome is None:
                raise StateError("the rescan this request waited for did not finish; try again")
            return shared.outcome
        shared = self._next_rescan = SharedScan()
        try:
            shared.outcome = await scanner.scan(
                "requested", on_start=partial(self._rescan_started, shared)
            )
        finally:
            self._rescan_started(shared)
            shared.done.set()
        return shared.outcome

    def _rescan_started(self, shared: SharedScan) -> None:
        # From here on, a new request needs a scan of its own: this one may have read already.
        if self._next_rescan is shared:
            self._next_rescan = None

    async def flush(self, reason: str = "requested") -> dict[str, Any]:
        """A checkpoint now (see Housekeeping.flush)."""
        return await self.housekeeping.flush(reason)

    # -- tracks, for the control server ------------------------------------------------------

    # While the snapshot is built, the tracks table holds part of the library at most: the
    # tracks are answered as they are before it, none.

    def track(self, field: str, value: str | int) -> dict[str, Any] | None:
        conn = self.db.read_conn
        found = None if feed.building(conn) else tracks.get_by(conn, field, value)
        return found.to_dict() if found is not None else None

    def album(self, artist: str, album: str) -> list[dict[str, Any]]:
        conn = self.db.read_conn
        found = [] if feed.building(conn) else tracks.album(conn, artist, album)
        return [t.to_dict() for t in found]

    def expectations(self) -> dict[str, int]:
        """The announced writes waiting for their echo, and how many expired unmet."""
        return self.housekeeping.expectations_status(self.db.read_conn)

    # -- status ------------------------------------------------------------------------------

    def database_status(self) -> dict[str, Any]:
        try:
            size = self.db.path.stat().st_size
        except OSError:
            size = None
        return {
            "path": str(self.db.path),
            "epoch": self.db.epoch,
            "last_seq": self.recorder.last_seq,
            "bytes": size,
            **self.writer.status.as_dict(),
            "consumers_behind": self.consumers.behind(self.db.read_conn),
            "moved_aside": str(self.db.moved_aside) if self.db.moved_aside else None,
        }

    def _track_count(self) -> int:
        conn = self.db.read_conn
        return 0 if feed.building(conn) else tracks.count(conn)

    def status(self) -> dict[str, Any]:
        """The daemon's state, each part as it reports itself."""
        scan = self.scan.status()
        database = self.database_status()
        return {
            "pid": os.getpid(),
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "started_at": self.started_at,
            "library": {
                "path": str(self.config.library.path),
                "source": self.config.library.source,
                "track_count": self._track_count(),
                **scan.library_dict(),
                **self.watcher.as_dict(),
            },
            **scan.as_dict(),
            "scan_in_progress": self.scan.progress(),
            **self.housekeeping.flush_status.as_dict(),
            "database": database,
            "database_error": database["error"],
            "dirty": database["uncheckpointed_commits"] > 0,
            "pending_events": max(database["consumers_behind"].values(), default=0),
            "last_seq": database["last_seq"],
            "epoch": database["epoch"],
            **self.hub.as_dict(),
            "expectations": self.expectations(),
            "state_dir": str(self.config.state.dir),
            "socket": str(self.config.control.socket),
            "shutting_down": self.shutting_down,
            **self.triggers.as_dict(),
        }
