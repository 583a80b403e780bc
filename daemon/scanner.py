"""The scanner task: wait for a change, let it settle, read the library once, diff, record.

Its baseline is the library as the journal's head describes it (the tracks of the last recorded
scan): a new diff never waits for, or races with, the consumers still applying the previous one.
A scan's events are committed to the journal in one transaction; the baseline moves only then.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
import structlog

from daemon import hints
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
from daemon.library import FileStat, LibraryRead, library_stat
from daemon.library.access import LibraryError, describe_library_error, errno_name
from daemon.library.differ import diff_tracks
from daemon.models import Track
from daemon.progress import ScanProgress
from daemon.read_job import ReadJob, run_abandonable
from daemon.recorder import Recorder, ScanRecord
from daemon.stores.writer import DatabaseUnavailable
from daemon.watcher import Wakeup

log = structlog.get_logger(__name__)

Reader = Callable[[], LibraryRead]
CHANGED_DURING_READ_RETRIES = 5
# A scan whose events could not be committed (disk full, database locked) is tried again after
# this long, then less often, but at least every verify_seconds.
COMMIT_RETRY_SECONDS = 2.0
# Errors that mean "the library is not there (yet)", not "something is wrong with it".
_MISSING_ERRNOS = frozenset({errno.ENOENT})
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


@dataclass
class ScanStatus:
    """What `status` reports about scanning."""

    last_scan_at: float | None = None
    last_scan_duration_ms: float | None = None
    last_scan_reason: str | None = None
    last_counts: dict[str, int] = field(default_factory=dict)
    scans: int = 0
    reader_error: str | None = None
    reader_error_at: float | None = None
    # The last scan's events could not be committed; it is read and recorded again.
    database_error: str | None = None
    library_missing: bool = False
    held_removals: int = 0
    held_since: float | None = None
    without_persistent_id: int = 0
    duplicate_ids: int = 0
    # An OS error on the library (stat, open, read): its errno, message and what fixes it.
    library_error: LibraryError | None = None
    # When the read that is still running past library.read_timeout_seconds started.
    read_stalled_since: float | None = None

    def library_error_dict(self) -> dict[str, object] | None:
        return self.library_error.as_dict() if self.library_error else None

    def read_stalled(self) -> dict[str, float] | None:
        """How long the current read has been running, once it is past its deadline."""
        if self.read_stalled_since is None:
            return None
        seconds = round(time.time() - self.read_stalled_since, 1)
        return {"since": self.read_stalled_since, "seconds": seconds}


@dataclass
class ScanOutcome:
    added: int = 0
    modified: int = 0
    removed: int = 0
    held_removals: int = 0
    ok: bool = True
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class Scanner:
    """Owns the baseline; turns wake-ups into scans and scans into batches."""

    def __init__(
        self,
        *,
        reader: Reader,
        library_path: Path,
        baseline: dict[str, Track],
        baseline_stat: FileStat | None,
        initial_build: bool,
        recorder: Recorder,
        wakeup: Wakeup,
        settle_seconds: float,
        settle_max_seconds: float,
        verify_seconds: float,
        full_scan_interval_seconds: float,
        last_full_scan: float | None,
        mass_removal_ratio: float,
        mass_removal_confirm_seconds: float,
        read_timeout_seconds: float = 600.0,
    ) -> None:
        self.reader = reader
        self.library_path = library_path
        self.baseline = baseline
        self.last_stat: Stat = baseline_stat
        self.read_timeout_seconds = read_timeout_seconds
        self._job: ReadJob | None = None
        self._stat_pending: _PendingStat | None = None
        self.initial_build = initial_build
        self.recorder = recorder
        self.wakeup = wakeup
        self.settle_seconds = settle_seconds
        self.settle_max_seconds = settle_max_seconds
        self.verify_seconds = verify_seconds
        self.full_scan_interval_seconds = full_scan_interval_seconds
        self.last_full_scan = last_full_scan
        self.mass_removal_ratio = mass_removal_ratio
        self.mass_removal_confirm_seconds = mass_removal_confirm_seconds
        self.status = ScanStatus()
        self.progress = ScanProgress()
        self._commit_failures = 0
        self._lock = anyio.Lock()
        self._held: dict[str, Track] = {}

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile once, then scan after every settled burst of changes until cancelled."""
        try:
            await self._scan_isolated("startup")
            while True:
                wait = self.verify_seconds
                if self._commit_failures:
                    wait = min(wait, COMMIT_RETRY_SECONDS * 2 ** min(self._commit_failures, 5))
                with anyio.move_on_after(wait):
                    await self.wakeup.wait()
                if not self.wakeup.is_set:
                    # The safety net: watchers can drop events (inotify overflow, FSEvents
                    # rescan). A library that failed with an OS error is tried again each
                    # time: fixing a permission (chmod, a privacy grant) changes no mtime.
                    # A scan whose events could not be committed is read and recorded again.
                    if (
                        await self._stat() != self.last_stat
                        or self._held
                        or self.status.library_error is not None
                        or self._commit_failures
                    ):
                        log.info("library_changed_unnoticed", path=str(self.library_path))
                        self.wakeup.notify("verify", force=True)
                    else:
                        continue
                reasons, forced = await self._settle()
                if not forced and await self._stat() == self.last_stat:
                    log.debug("scan_skipped", reasons=sorted(reasons), why="library unchanged")
                    continue
                await self._scan_isolated(",".join(sorted(reasons)))
        finally:
            self._abandon_read()

    async def _stat(self) -> Stat:
        """The library's stat; an OS error other than "not there" is a value, never a crash.

        Taken on a daemon thread with a deadline: a stat on a network volume that
        stopped answering must neither freeze the event loop (and with it SIGTERM) nor keep
        the process alive. While one hangs, no second one is started.
        """
        deadline = min(self.read_timeout_seconds, STAT_TIMEOUT_SECONDS)
        pending = self._stat_pending
        if pending is not None:
            # One is under way (a rescan beside the loop, or one that hangs): wait for it too.
            with anyio.move_on_after(deadline):
                await pending.done.wait()
            return pending.result if pending.done.is_set() else StatFailed(errno.ETIMEDOUT)
        call = self._stat_pending = _PendingStat()

        def stat() -> FileStat | None:
            try:
                return library_stat(self.library_path)
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
        # A bug in one scan must not stop the daemon from watching: log it and wait for the next.
        try:
            await self.scan(reason)
        except Exception:
            log.exception("scan_failed", reason=reason)
            self.last_stat = None

    async def _settle(self) -> tuple[set[str], bool]:
        """Wait for `settle_seconds` of quiet, but no longer than `settle_max_seconds` in all."""
        first = anyio.current_time()
        reasons: set[str] = set()
        forced = False
        while True:
            more, force = self.wakeup.take()
            reasons |= more
            forced = forced or force
            remaining = self.settle_max_seconds - (anyio.current_time() - first)
            if remaining <= 0 or self.settle_seconds <= 0:
                return reasons, forced
            with anyio.move_on_after(min(self.settle_seconds, remaining)):
                await self.wakeup.wait()
            if not self.wakeup.is_set:
                return reasons, forced

    # -- one scan ------------------------------------------------------------------------

    async def _read(self) -> LibraryRead:
        for _ in range(CHANGED_DURING_READ_RETRIES):
            try:
                read = await self._read_once()
            except LibraryChangedDuringRead:
                log.info("library_changed_during_read", path=str(self.library_path))
                await anyio.sleep(max(self.settle_seconds, 0.2))
                continue
            self.status.library_error = None
            return read
        raise LibraryChangedDuringRead(
            f"library file {self.library_path} kept changing while it was read; "
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
            job = self._job = ReadJob(self.reader, self._read_finished_late)
        with anyio.move_on_after(self.read_timeout_seconds):
            await job.done.wait()
        if job.running:
            job.late = True
            self.status.read_stalled_since = job.started_at
            seconds = round(time.time() - job.started_at, 1)
            log.warning(
                "library_read_stalled",
                path=str(self.library_path),
                seconds=seconds,
                hint="left running and used when it ends; on a Mac it may be waiting for a "
                "privacy prompt, a network volume or a busy Music.app",
            )
            raise LibraryReadStalled(
                f"reading {self.library_path} has not finished after {seconds:g} s "
                "(library.read_timeout_seconds); it is used when it ends"
            )
        self._job = None
        self.status.read_stalled_since = None
        return job.outcome()

    def _read_finished_late(self, job: ReadJob) -> None:
        # Runs on the loop when a stalled read ends: scan now to pick up what it read.
        self.status.read_stalled_since = None
        log.info("library_read_finished_late", seconds=round(time.time() - job.started_at, 1))
        self.wakeup.notify("stalled_read_finished", force=True)

    def _abandon_read(self) -> None:
        """At shutdown: stop a read that can be stopped (osascript); leave the rest behind."""
        if self._job is not None and self._job.running:
            cancel = getattr(self.reader, "cancel", None)
            if callable(cancel):
                cancel()
            log.info("library_read_abandoned", path=str(self.library_path))

    async def scan(self, reason: str, *, accept_removals: bool = False) -> ScanOutcome:
        """Read the library once and publish what changed. Never raises for a bad library."""
        async with self._lock:
            with self.progress.scanning(reason, expected_tracks=len(self.baseline)):
                return await self._scan_locked(reason, accept_removals)

    async def _scan_locked(self, reason: str, accept_removals: bool) -> ScanOutcome:
        started = time.monotonic()
        now = time.time()
        full = (
            self.last_full_scan is None
            or now - self.last_full_scan >= self.full_scan_interval_seconds
        )
        await self._observe(SCAN_STARTED, reason=reason)
        before = await self._stat()
        try:
            read = await self._read()
        except LibraryReadError as err:
            return await self._failed(err, reason, before)
        if self.status.reader_error or self.status.library_missing:
            log.info("library_readable_again", path=str(self.library_path))
        self.status.reader_error = None
        self.status.library_missing = False
        self.status.without_persistent_id = read.without_persistent_id
        self.status.duplicate_ids = read.duplicate_ids
        for warning in read.warnings:
            log.warning("library_warning", path=str(self.library_path), warning=warning.text)

        if self.initial_build:
            events: list[TrackEvent] = []
            replace: dict[str, Track] | None = read.tracks
            held: dict[str, Track] = {}
        else:
            raw = await anyio.to_thread.run_sync(diff_tracks, self.baseline, read.tracks)
            events, held = self._guard_removals(raw, accept_removals, now)
            replace = None
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
            "tracks": len(read.tracks),
        }
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        record = ScanRecord(
            stat=read.stat,
            full=full,
            scanned_at=now,
            library_path=str(self.library_path),
            replace=replace,
        )
        finished = ObserverEvent(
            SCAN_FINISHED, dict(duration_ms=duration_ms, reason=reason, **counts)
        )
        try:
            await self.recorder.record([*events, finished], record)
        except DatabaseUnavailable as err:
            # Nothing of this scan was recorded: keep the baseline, read again shortly.
            self._commit_failures += 1
            self.status.database_error = str(err)
            log.warning("scan_not_recorded", reason=reason, error=str(err))
            return ScanOutcome(ok=False, error=str(err))
        if self._commit_failures:
            log.info("scan_recorded_again", after_failures=self._commit_failures)
        self._commit_failures = 0
        self.status.database_error = None
        new_baseline = read.tracks
        if held:
            new_baseline = {**read.tracks, **held}
        self.baseline = new_baseline
        self.last_stat = read.stat
        if full:
            self.last_full_scan = now
        self.status.last_scan_at = now
        self.status.last_scan_duration_ms = duration_ms
        self.status.last_scan_reason = reason
        self.status.scans += 1
        self.status.last_counts = counts
        if self.initial_build:
            log.info(
                "snapshot_built",
                tracks=len(read.tracks),
                duration_ms=duration_ms,
                without_persistent_id=read.without_persistent_id,
            )
            self.initial_build = False
        log.info("scan_finished", reason=reason, duration_ms=duration_ms, **counts)
        return outcome

    async def _failed(self, err: LibraryReadError, reason: str, before: Stat) -> ScanOutcome:
        message = str(err)
        busy = isinstance(err, LibraryChangedDuringRead)
        now_stat = await self._stat()
        missing = now_stat is None
        number = err.os_errno
        if number is None and isinstance(now_stat, StatFailed):
            number = now_stat.errno
        if missing or number in _MISSING_ERRNOS:
            self.status.library_error = None
        elif number is not None:
            self._note_library_error(number, message)
        if busy:
            log.warning(
                "library_busy",
                path=str(self.library_path),
                reason=message,
                hint="nothing was changed; it is read again once it stops changing",
            )
        elif missing:
            if not self.status.library_missing:
                log.warning(
                    "library_missing",
                    path=str(self.library_path),
                    hint="waiting for it to appear; check library.path in the config",
                )
            self.status.library_missing = True
        elif message != self.status.reader_error and not isinstance(err, LibraryReadStalled):
            log.error(
                "library_unreadable",
                path=str(self.library_path),
                reason=message,
                hint="nothing was changed; the next change to the file is scanned again",
            )
        self.status.reader_error = message
        self.status.reader_error_at = time.time()
        # Remember the broken version's stat, taken *before* the read: the safety net does not
        # re-read the same broken file every minute, yet a version written while this read was
        # failing differs from it, so it is read even if its event was lost (no watcher,
        # queue overflow). A file that kept changing was read at no stat at all.
        self.last_stat = None if busy else before
        await self._observe(ERROR, reason=reason, message=message)
        return ScanOutcome(ok=False, error=message)

    def _note_library_error(self, number: int, message: str) -> None:
        name = errno_name(number)
        previous = self.status.library_error
        if previous is not None and previous.errno == name and previous.message == message:
            return
        hint = describe_library_error(number, self.library_path)
        self.status.library_error = LibraryError(
            errno=name, message=message, hint=hint, since=time.time()
        )
        log.error(
            "library_access_failed",
            path=str(self.library_path),
            errno=name,
            error=os.strerror(number),
            hint=hint,
        )

    def _guard_removals(
        self, events: list[TrackEvent], accept: bool, now: float
    ) -> tuple[list[TrackEvent], dict[str, Track]]:
        """Hold a mass removal until a later scan confirms it (or the user accepts it).

        A library that suddenly lost most of its tracks is more often a half-synced or
        mis-exported file than a real deletion, and applying it would throw away cached
        answers that took hours of rate-limited lookups to gather.
        """
        removed = [e for e in events if isinstance(e, TrackRemoved)]
        total = len(self.baseline)
        if accept or not removed or total == 0:
            self._clear_hold()
            return events, {}
        share = len(removed) / total
        # Losing every track at once is held whatever the configured share: a ratio of 1.0
        # would otherwise let an empty (half-synced, mis-exported) library file through.
        if share <= self.mass_removal_ratio and len(removed) < total:
            self._clear_hold()
            return events, {}
        held_ids = {e.persistent_id for e in removed}
        if self._held and held_ids <= set(self._held) and self.status.held_since is not None:
            if now - self.status.held_since >= self.mass_removal_confirm_seconds:
                log.warning("mass_removal_confirmed", removed=len(removed), tracks=total)
                self._clear_hold()
                return events, {}
        else:
            self.status.held_since = now
        self._held = {e.persistent_id: e.track for e in removed}
        self.status.held_removals = len(removed)
        log.warning(
            "mass_removal_held",
            removed=len(removed),
            tracks=total,
            share=round(share, 3),
            hint=f"run '{hints.command('rescan', '--accept-removals')}' if the tracks really were "
            "deleted",
        )
        kept: list[TrackEvent] = [e for e in events if not isinstance(e, TrackRemoved)]
        return kept, dict(self._held)

    def _clear_hold(self) -> None:
        self._held = {}
        self.status.held_removals = 0
        self.status.held_since = None
