"""The scanner's start: its baseline is loaded only once the socket serves (a cold start
answers at once), so the `Scanner` is made then, by `LibraryScan.run`, and what asks for it
meanwhile (`rescan`, `status`) is told it is not there yet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from daemon.config import Config
from daemon.journal import feed, merger
from daemon.journal.recorder import Recorder
from daemon.library import FileStat, KnownTracks, LibraryReader, SnapshotBuild
from daemon.stores import journal, tracks
from daemon.stores.schema import reading
from daemon.stores.transactions import snapshot
from daemon.watch.debounce import Debouncer
from daemon.watch.first_build import FirstBuild
from daemon.watch.progress import ScanProgress
from daemon.watch.removal_guard import RemovalGuard
from daemon.watch.scan_status import ScanStatus
from daemon.watch.scanner import Scanner

MakeReader = Callable[[Config, KnownTracks, SnapshotBuild], LibraryReader]


@dataclass
class LibraryScan:
    """Loads the baseline, then runs the scanner until cancelled."""

    config: Config
    db_path: Path
    recorder: Recorder
    changes: Debouncer
    make_reader: MakeReader
    removal_guard: RemovalGuard
    # How far a scan has got: the scanner reports to it; `status` and `musicd run` read it.
    scan_progress: ScanProgress
    # Called after each scan (see Scanner).
    after_scan: Callable[[], None]
    # Made by run() once the baseline is loaded; None until then.
    scanner: Scanner | None = field(default=None, init=False)

    async def run(self) -> None:
        config = self.config
        known, stat, building = await anyio.to_thread.run_sync(_baseline, self.db_path)
        # The scanner's worker threads read the baseline on a connection of their own.
        head = await anyio.to_thread.run_sync(tracks.HeadTracks, self.db_path, merger.CONSUMER)
        build = FirstBuild(self.recorder, due=building)
        self.scanner = Scanner(
            library=config.library,
            reader=self.make_reader(config, head, build),
            snapshot=head,
            baseline_count=known,
            baseline_stat=stat,
            build=build,
            recorder=self.recorder,
            changes=self.changes,
            removal_guard=self.removal_guard,
            progress=self.scan_progress,
            after_scan=self.after_scan,
        )
        try:
            await self.scanner.run()
        finally:
            head.close()

    def status(self) -> ScanStatus:
        if self.scanner is None:
            # Nothing is known of the library before the scanner exists.
            return ScanStatus(library_missing=None)
        return self.scanner.status

    def progress(self) -> dict[str, Any] | None:
        """The scan under way (`scan_in_progress`), None when none runs."""
        return self.scan_progress.snapshot()


def _baseline(db_path: Path) -> tuple[int, FileStat | None, bool]:
    """The track count and library stat the journal's head describes (after catch-up), and
    whether the snapshot is still to be built (then it counts no track)."""
    # Its own connection: this runs in a worker thread while the loop reads on its own.
    with reading(db_path) as conn, snapshot(conn):
        meta = journal.meta(conn)
        building = feed.building(conn)
        known = 0 if building else tracks.count(conn)
    parts = (meta.get("library_mtime_ns"), meta.get("library_size"), meta.get("library_inode"))
    stat = FileStat(*parts) if all(isinstance(p, int) for p in parts) else None  # type: ignore[arg-type]
    return known, stat, building
