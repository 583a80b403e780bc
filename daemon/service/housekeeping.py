"""The daemon's database upkeep: checkpoints (what `flush` means), the periodic checkpoint
after commits, and the periodic cleanup of expired cache entries, expired announced writes and
old journal rows.

Each runs through the one `Writer`, like every other change to the database.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import anyio
import structlog

from daemon.config import Config
from daemon.events import FLUSH_FINISHED, ObserverEvent
from daemon.journal.feed import is_reserved, kept_for_program
from daemon.journal.recorder import Recorder
from daemon.journal.signal import Signal
from daemon.journal.triggers import cursor_name
from daemon.stores import cache, expectations, journal
from daemon.stores.database import Database, checkpoint
from daemon.stores.writer import DatabaseUnavailable, Writer

log = structlog.get_logger(__name__)

MAX_FLUSH_RETRY_SECONDS = 300.0


@dataclass
class FlushStatus:
    last_flush_at: float | None = None
    last_flush_duration_ms: float | None = None
    flush_error: str | None = None
    flush_error_at: float | None = None

    def failed(self, error: str) -> FlushStatus:
        """This status after a checkpoint that failed with `error`."""
        return FlushStatus(self.last_flush_at, self.last_flush_duration_ms, error, time.time())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Housekeeping:
    """Checkpoints and cleanup for one open database, on behalf of the Service."""

    config: Config
    db: Database
    writer: Writer
    recorder: Recorder
    # Set by every commit (the writer's on_commit): the periodic checkpoint waits on it, so an
    # idle daemon sleeps.
    dirty: Signal
    flush_status: FlushStatus = field(default_factory=FlushStatus)
    # Announced writes (`writes.expect`) dropped since the daemon started: their time was up
    # before a scan found them (the program did not write, or wrote other values).
    expectations_expired: int = 0

    def expectations_status(self, conn: sqlite3.Connection) -> dict[str, int]:
        """What `status` and `stats` show of the announced writes."""
        return {"pending": expectations.pending(conn), "expired": self.expectations_expired}

    async def flush(self, reason: str = "requested") -> dict[str, Any]:
        """Make everything committed durable against a power cut now (a WAL checkpoint).

        Raises DatabaseUnavailable when the checkpoint failed (recorded in the status).
        """
        started = time.monotonic()
        commits = self.writer.status.uncheckpointed_commits
        try:
            old_read_conn = await self.writer.submit(self._renew_wal, transaction=False)
            if old_read_conn is not None:
                old_read_conn.close()
            done = await self.writer.submit(
                partial(checkpoint, path=self.db.path), transaction=False
            )
        except DatabaseUnavailable as err:
            self.flush_status = self.flush_status.failed(str(err))
            raise
        self.writer.checkpointed(commits)
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        if self.flush_status.flush_error:
            log.info("flush_recovered", previous_error=self.flush_status.flush_error)
        self.flush_status = FlushStatus(
            last_flush_at=time.time(),
            last_flush_duration_ms=duration_ms,
        )
        result = {
            "checkpointed": True,
            "wrote": commits > 0,
            "did": f"made {commits} commit{'s' if commits != 1 else ''} durable against a power cut"
            if commits
            else "nothing new to make durable: every acknowledged write was already checkpointed",
            "commits_made_durable": commits,
            "wal_frames": done["wal_frames"],
            "checkpointed_frames": done["checkpointed_frames"],
            "reader_held_back": done["busy"],
            "duration_ms": duration_ms,
        }
        log.info("flush_finished", reason=reason, **result)
        if commits:
            try:
                await self.recorder.record(
                    [ObserverEvent(FLUSH_FINISHED, {"reason": reason, **result})], quiet=True
                )
            except DatabaseUnavailable as err:
                log.warning("event_not_recorded", type=FLUSH_FINISHED, error=str(err))
        return result

    def _renew_wal(self, conn: sqlite3.Connection) -> sqlite3.Connection | None:
        return self.db.renew_wal()

    async def flush_periodically(self) -> None:
        """After a commit, wait `flush_interval_seconds`, then checkpoint; sleeps while idle."""
        interval = self.config.state.flush_interval_seconds
        failures = 0
        flushed = 0  # the commits up to this count of `dirty` are checkpointed
        while True:
            await self.dirty.wait_past(flushed)
            await anyio.sleep(interval)  # coalesce: one checkpoint for every commit meanwhile
            upto = self.dirty.count
            try:
                await self.flush("interval")
            except DatabaseUnavailable:
                # `flushed` stays: the next turn tries again, without waiting for a commit.
                failures += 1
                delay = min(max(interval, 1.0) * 2**failures, MAX_FLUSH_RETRY_SECONDS)
                log.warning("flush_retry_scheduled", in_seconds=delay, failures=failures)
                await anyio.sleep(delay)
                continue
            failures = 0
            flushed = upto

    async def maintain(self) -> None:
        """Every `cache.cleanup_interval_seconds`, `maintain_once`."""
        while True:
            await anyio.sleep(self.config.cache.cleanup_interval_seconds)
            await self.maintain_once()

    async def maintain_once(self) -> None:
        """Drop expired cache entries and announced writes whose time is up, trim the journal."""
        try:
            expired, trimmed, unmet = await self.writer.submit(self._maintenance)
        except DatabaseUnavailable as err:
            log.warning("maintenance_skipped", error=str(err))
            return
        self.expectations_expired += unmet
        if expired or trimmed or unmet:
            log.info(
                "maintenance_finished",
                cache_expired=expired,
                journal_trimmed=trimmed,
                expectations_expired=unmet,
            )

    def _maintenance(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        now = time.time()
        expired = cache.cleanup_expired(conn, now)
        unmet = expectations.drop_expired(conn, now)
        cfg = self.config.journal
        max_age = cfg.max_age_days * 86400.0
        keep_after = journal.head(conn)
        # A trigger no longer in the config is kept for as a program's cursor is.
        triggers = {cursor_name(t.name) for t in self.config.triggers}
        for name, (seq, updated_at) in journal.cursors(conn).items():
            if is_reserved(name):
                # Our own consumers need only the track events they have not applied yet. They
                # move their cursors only past track events (a scan that changed nothing costs
                # no consumer transaction), so the observer rows after their cursors (scans,
                # checkpoints) are not kept for them: the journal trims while the library is
                # only rescanned (tests/e2e/test_lifecycle_e2e.py::test_journal_trims_*).
                pending = journal.next_track_event(conn, seq)
                if pending is not None:
                    keep_after = min(keep_after, pending - 1)
                continue
            if name in triggers:
                # A configured trigger is kept what it has not committed, however long its
                # command fails: it moves its cursor past what does not match it whenever it
                # looks, so only the events its command has yet to take hold the journal.
                keep_after = min(keep_after, seq)
                continue
            if kept_for_program(updated_at, now=now, max_age_days=cfg.max_age_days):
                keep_after = min(keep_after, seq)
        trimmed = journal.trim(
            conn, keep_after=keep_after, before_at=now - max_age, max_events=cfg.max_events
        )
        return expired, trimmed, unmet
