"""The scanner task: for each settled burst of changes, read the library once, diff, record.

Its baseline is the library as the journal's head describes it (`daemon.watch.baseline`); a scan's
events are committed in one transaction, and the baseline moves only then. A scan that was not
recorded makes the reader forget what it read, so the next read is compared in full.
"""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import anyio
import anyio.to_thread
import structlog

from daemon.config import LibraryConfig
from daemon.errors import LibraryChangedDuringRead, LibraryReadError, LibraryReadStalled
from daemon.events import (
    ERROR,
    SCAN_FINISHED,
    SCAN_STARTED,
    ObserverEvent,
    TrackAdded,
    TrackEvent,
    TrackModified,
    TrackRemoved,
)
from daemon.journal.recorder import Recorder, ScanRecord
from daemon.library import FileStat, LibraryRead, LibraryReader, library_stat
from daemon.models import Track
from daemon.stores.writer import DatabaseUnavailable
from daemon.watch.baseline import Snapshot, diff_read
from daemon.watch.debounce import Debouncer
from daemon.watch.first_build import FirstBuild
from daemon.watch.progress import ScanProgress
from daemon.watch.read_job import ReadJob, run_abandonable
from daemon.watch.removal_guard import RemovalGuard
from daemon.watch.scan_status import ScanOutcome, ScanStatus

log = structlog.get_logger(__name__)

CHANGED_DURING_READ_RETRIES = 5
# A scan whose events could not be committed (disk full, database locked) is tried again after
# this long, then less often, but at least every verify_seconds.
COMMIT_RETRY_SECONDS = 2.0
# A stat takes milliseconds; one this slow is a volume that stopped answering (at most the read
# deadline, so a short library.read_timeout_seconds shortens it too).
STAT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class StatFailed:
    """stat() on the library failed with this errno: equal to itself, so a library that stays
    broken is not re-read every minute, and different from any real stat once it recovers."""

    errno: int


Stat = FileStat | StatFailed | None


@dataclass(eq=False)
class _PendingStat:
    """A stat of the library under way; callers that come meanwhile wait for its result."""

    result: Stat = None
    done: anyio.Event = field(default_factory=anyio.Event)


class Scanner:
    """Owns the baseline; turns settled bursts of changes into scans and scans into batches."""

    def __init__(
        self,
        *,
        library: LibraryConfig,
        reader: LibraryReader,
        snapshot: Snapshot,
        baseline_count: int,
        baseline_stat: FileStat | None,
        build: FirstBuild,
        recorder: Recorder,
        changes: Debouncer,
        removal_guard: RemovalGuard,
        progress: ScanProgress | None = None,
        after_scan: Callable[[], None] = lambda: None,
    ) -> None:
        self.library = library
        self.reader = reader
        self.snapshot = snapshot
        # How many tracks the baseline holds (for the removal guard and progress).
        self.baseline_count = baseline_count
        self.last_stat: Stat = baseline_stat
        self._job: ReadJob[LibraryRead] | None = None
        self._stat_pending: _PendingStat | None = None
        # While the snapshot is still to be built, a scan builds it (no track events).
        self.build = build
        self.recorder = recorder
        # The watcher notifies `changes` (and the scanner itself, for a read that finished
        # late); the library's settle times make bursts of those notifications.
        self.changes = changes
        self.removal_guard = removal_guard
        self.status = ScanStatus()
        # How far the running scan has got (`status`, and `musicd run`'s progress line).
        self.progress = progress if progress is not None else ScanProgress()
        self._commit_failures = 0
        self._full_read_unrecorded = False
        # On a worker thread once a scan is over and its objects are gone (daemon.process).
        self.after_scan = after_scan
        self._lock = anyio.Lock()

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile once, then scan after every settled burst of changes until cancelled."""
        try:
            await self._scan_isolated("startup")
            bursts = self.changes.settled(quiet_seconds=self._quiet_seconds)
            async with contextlib.aclosing(bursts):
                async for burst in bursts:
                    if not burst.reasons:
                        # Quiet for the whole timeout: the safety net (see _changed_unnoticed).
                        if await self._changed_unnoticed():
                            log.info("library_changed_unnoticed", path=str(self.library.path))
                            self.changes.notify("verify", force=True)
                        continue
                    if not burst.forced and await self._stat() == self.last_stat:
                        log.debug(
                            "scan_skipped", reasons=sorted(burst.reasons), why="library unchanged"
                        )
                        continue
                    await self._scan_isolated(burst.reason)
        finally:
            self._abandon_read()

    def _quiet_seconds(self) -> float:
        if self._commit_failures:
            retry: float = COMMIT_RETRY_SECONDS * 2 ** min(self._commit_failures, 5)
            return min(self.library.verify_seconds, retry)
        return self.library.verify_seconds

    async def _changed_unnoticed(self) -> bool:
        """Whether a quiet library needs a scan all the same.

        Watchers can drop events (inotify overflow, FSEvents rescan). A library that failed
        with an OS error is tried again each time: fixing a permission (chmod, a privacy
        grant) changes no mtime. A scan whose events could not be committed is read and
        recorded again, as is a held removal (to confirm it).
        """
        return bool(
            await self._stat() != self.last_stat
            or self.removal_guard.held
            or self.status.library_error is not None
            or self._commit_failures
        )

    async def _stat(self) -> Stat:
        """The library's stat; an OS error other than "not there" is a value, never a crash.

        Taken on a daemon thread with a deadline: a stat on a network volume that
        stopped answering must neither freeze the event loop (and with it SIGTERM) nor keep
        the process alive. While one hangs, no second one is started.
        """
        deadline = min(self.library.read_timeout_seconds, STAT_TIMEOUT_SECONDS)
        pending = self._stat_pending
        if pending is not None:
            # One is under way (a rescan beside the loop, or one that hangs): wait for it too.
            with anyio.move_on_after(deadline):
                await pending.done.wait()
            return pending.result if pending.done.is_set() else StatFailed(errno.ETIMEDOUT)
        call = self._stat_pending = _PendingStat()

        def stat() -> FileStat | None:
            try:
                return library_stat(self.library.path)
            finally:
                # On the thread: a stat that hung and ends at last lets the next one start.
                self._stat_pending = None

        with anyio.move_on_after(deadline):
            try:
                call.result = await run_abandonable(stat)
            except OSError as err:
                call.result = StatFailed(err.errno or 0)
            call.done.set()
            return call.result
        return StatFailed(errno.ETIMEDOUT)

    async def _scan_isolated(self, reason: str) -> None:
        # A bug in one scan (an unexpected exception from the reader or the differ) must not
        # stop the daemon from watching: log it, forget the stat, and scan the next change
        # (tests/reliability/test_scanner_races.py::test_a_scan_bug_cannot_stop_watching).
        try:
            await self.scan(reason)
        except Exception:
            log.exception("scan_failed", reason=reason)
            self.last_stat = None
            self.reader.forget()

    # -- one scan ------------------------------------------------------------------------

    async def _read(self) -> LibraryRead:
        for _ in range(CHANGED_DURING_READ_RETRIES):
            try:
                read = await self._read_once()
            except LibraryChangedDuringRead:
                log.info("library_changed_during_read", path=str(self.library.path))
                await anyio.sleep(max(self.changes.settle_seconds, 0.2))
                continue
            self.status.library_error = None
            return read
        raise LibraryChangedDuringRead(
            f"library file {self.library.path} kept changing while it was read; "
            "reading it again once it settles"
        )

    async def _observe(self, kind: str, **data: object) -> None:
        """Record an observer event; one that cannot be committed is logged, not fatal."""
        try:
            await self.recorder.record([ObserverEvent(kind, dict(data))])
        except DatabaseUnavailable as err:
            log.warning("event_not_recorded", type=kind, error=str(err))

    async def _read_once(self) -> LibraryRead:
        """One read, on a thread that is left behind if it outlives its deadline.

        A read still running from an earlier scan is waited for again rather than doubled;
        its result, once it comes, is as good as a new one (its stat was taken before it).
        """
        job = self._job
        if job is None:
            read = partial(self.reader.read, self.progress.update)
            job = self._job = ReadJob(read, on_late_finish=self._read_finished_late)
        with anyio.move_on_after(self.library.read_timeout_seconds):
            await job.done.wait()
        if job.running:
            job.late = True
            self.status.read_stalled_since = job.started_at
            seconds = round(time.time() - job.started_at, 1)
            log.warning(
                "library_read_stalled",
                path=str(self.library.path),
                seconds=seconds,
                hint="left running and used when it ends; on a Mac it may be waiting for a "
                "privacy prompt, a network volume or a busy Music.app",
            )
            raise LibraryReadStalled(
                f"reading {self.library.path} has not finished after {seconds:g} s "
                "(library.read_timeout_seconds); it is used when it ends"
            )
        self._job = None
        self.status.read_stalled_since = None
        return job.outcome()

    def _read_finished_late(self, job: ReadJob[LibraryRead]) -> None:
        # Runs on the loop when a stalled read ends: scan now to pick up what it read.
        self.status.read_stalled_since = None
        log.info("library_read_finished_late", seconds=round(time.time() - job.started_at, 1))
        self.changes.notify("stalled_read_finished", force=True)

    def _abandon_read(self) -> None:
        """At shutdown: stop a read that can be stopped (osascript); leave the rest behind."""
        if self._job is not None and self._job.running:
            self.reader.cancel()
            log.info("library_read_abandoned", path=str(self.library.path))

    async def scan(
        self,
        reason: str,
        *,
        accept_removals: bool = False,
        on_start: Callable[[], None] | None = None,
    ) -> ScanOutcome:
        """Read the library once and record what changed. Never raises for a bad library.

        `on_start` is called once this scan's turn came (after any scan before it), just
        before it looks at the file."""
        async with self._lock:
            if on_start is not None:
                on_start()
            with self.progress.scanning(reason, expected_tracks=self.baseline_count):
                outcome = await self._scan_locked(reason, accept_removals=accept_removals)
            await anyio.to_thread.run_sync(self.after_scan)
            return outcome

    async def _scan_locked(self, reason: str, *, accept_removals: bool) -> ScanOutcome:
        started = time.monotonic()
        now = time.time()
        await self._observe(SCAN_STARTED, reason=reason)
        before = await self._stat()
        try:
            read = await self._read()
            if self.build.due and read.gone is not None and not read.full:
                # An incremental read cannot build a snapshot (the build's commit failed after
                # the reader moved on): read again in full.
                self.reader.forget()
                read = await self._read()
            if self.build.due and not read.streamed:
                await self.build.add_read(read.tracks)
        except LibraryReadError as err:
            return await self._failed(err, reason, before)
        except DatabaseUnavailable as err:
            # A full read compares with the snapshot as it goes, a build writes as it goes.
            return self._not_recorded(reason, err)
        self.status.read_succeeded(read, self.library.path)
        # A full read whose scan was not recorded (a failed commit, a bug) still counts when a
        # later read is: that one is likely incremental, the reader having moved on.
        self._full_read_unrecorded = self._full_read_unrecorded or read.full

        if self.build.due:
            # The tracks are in the table already: the build's last transaction records it.
            events: list[TrackEvent] = []
            held: dict[str, Track] = {}
        else:
            try:
                raw = await anyio.to_thread.run_sync(
                    diff_read, read, self.snapshot, self.removal_guard.held
                )
            except DatabaseUnavailable as err:
                return self._not_recorded(reason, err)
            events, held = self.removal_guard.check(
                raw, baseline_size=self.baseline_count, accept=accept_removals, now=now
            )
            self.status.held_removals = len(held)
            self.status.held_since = self.removal_guard.since
        outcome = ScanOutcome(
            added=sum(isinstance(e, TrackAdded) for e in events),
            modified=sum(isinstance(e, TrackModified) for e in events),
            removed=sum(isinstance(e, TrackRemoved) for e in events),
            held_removals=len(held),
        )
        counts = {
            "added": outcome.added,
            "modified": outcome.modified,
            "removed": outcome.removed,
            "held_removals": outcome.held_removals,
            "tracks": read.count(),
        }
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        record = ScanRecord(
            stat=read.stat,
            full=self._full_read_unrecorded,
            scanned_at=now,
            library_path=str(self.library.path),
            build=self.build.due,
        )
        data: dict[str, object] = dict(duration_ms=duration_ms, reason=reason, **counts)
        if self.build.due:
            # A live subscriber's only sign of the build (it has no track events): read the
            # library with tracks.list now.
            data["build"] = True
        finished = ObserverEvent(SCAN_FINISHED, data)
        try:
            await self.recorder.record([*events, finished], record)
        except DatabaseUnavailable as err:
            return self._not_recorded(reason, err)
        if self._commit_failures:
            log.info("scan_recorded_again", after_failures=self._commit_failures)
        self._commit_failures = 0
        self._full_read_unrecorded = False
        self.status.database_error = None
        # Held removals stay in the baseline (the database keeps them).
        self.baseline_count = read.count() + len(held)
        self.last_stat = read.stat
        self.status.scan_recorded(reason, at=now, duration_ms=duration_ms, counts=counts)
        if self.build.due:
            self.build.finished(read, duration_ms)
        log.info("scan_finished", reason=reason, duration_ms=duration_ms, **counts)
        return outcome

    def _not_recorded(self, reason: str, err: DatabaseUnavailable) -> ScanOutcome:
        # Nothing of this scan was recorded: keep the baseline, read again shortly.
        self.reader.forget()
        self._commit_failures += 1
        self.status.database_error = str(err)
        log.warning("scan_not_recorded", reason=reason, error=str(err))
        return ScanOutcome(ok=False, error=str(err))

    async def _failed(self, err: LibraryReadError, reason: str, before: Stat) -> ScanOutcome:
        busy = isinstance(err, LibraryChangedDuringRead)
        now_stat = await self._stat()
        missing = now_stat is None
        number = err.os_errno
        if number is None and isinstance(now_stat, StatFailed):
            number = now_stat.errno
        self.status.read_failed(err, self.library.path, errno=number, missing=missing)
        # Remember the broken version's stat, taken *before* the read: the safety net does not
        # re-read the same broken file every minute, yet a version written while this read was
        # failing differs from it, so it is read even if its event was lost (no watcher,
        # queue overflow). A file that kept changing was read at no stat at all.
        self.last_stat = None if busy else before
        await self._observe(ERROR, reason=reason, message=str(err))
        return ScanOutcome(ok=False, error=str(err))
