"""Triggers: commands the daemon starts when the journal holds events that match them.

Each `[[triggers]]` table of the config is a `Trigger`, a consumer of the journal with a
durable cursor of its own, `trigger.<name>` in the cursors table. Unlike the merger and the
invalidator it does not move its cursor in the transaction that applies events: the events
are handed to a command, and the cursor moves to the last event handed over only once the
command exited 0. Anything else (another exit status, a crash, a timeout, a daemon killed or
stopped during the run) moves nothing, so the same events, and any new ones, are handed over
again by the next run: delivery is at least once, and exactly once for a command that
succeeds.

A trigger sleeps on its `wake` signal while nothing matches (set by every commit of track
events, through `Triggers.run`): nothing polls while the library is idle. With matching events
it waits for `settle_seconds` after the last of them was seen, `min_interval_seconds` after
its last start and the backoff after a failure, then runs the command (trigger_process.py).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import structlog

from daemon.config import TriggerConfig
from daemon.events import TRACK_MODIFIED
from daemon.journal import feed
from daemon.journal.signal import Signal
from daemon.journal.trigger_process import Outcome, command_env, run_command, stdin_file
from daemon.stores import journal
from daemon.stores.database import Database
from daemon.stores.transactions import snapshot
from daemon.stores.writer import DatabaseUnavailable, Writer

log = structlog.get_logger(__name__)

# A trigger's cursor is named under it (programs name theirs as they like; the daemon's own
# consumers are under feed.RESERVED_PREFIX).
CURSOR_PREFIX: Final = "trigger."
# Events handed to one run at most; a bigger backlog is delivered over several runs.
MAX_EVENTS: Final = 10_000
# Journal rows read per query while looking for matching events.
_PAGE: Final = 5000
# After a failed run: 10 s, doubling each failure, at most an hour.
FIRST_BACKOFF_SECONDS: Final = 10.0
MAX_BACKOFF_SECONDS: Final = 3600.0


def cursor_name(trigger: str) -> str:
    return CURSOR_PREFIX + trigger


def backoff_seconds(failures: int) -> float:
    """How long to wait after `failures` failed runs in a row (at least 1)."""
    return min(FIRST_BACKOFF_SECONDS * 2.0 ** min(failures - 1, 20), MAX_BACKOFF_SECONDS)


@dataclass(frozen=True, slots=True)
class Look:
    """What lies past a trigger's cursor, read in one read transaction."""

    # The trigger's cursor (None: it has none yet).
    cursor: int | None
    # Where its cursor moves when a run of these events succeeds (or at once, when `events`
    # is empty and this is not a resync).
    upto: int
    # The matching events, in their wire form (at most MAX_EVENTS).
    events: list[dict[str, Any]]
    # The journal no longer holds what lies past the cursor: the command does a full pass.
    resync: bool
    # The library is being built: nothing to do until it is.
    building: bool = False
    # The build's position (journal.SNAPSHOT_BUILT), for a trigger that saw the build begin.
    built: int | None = None


def matches(spec: TriggerConfig, event: dict[str, Any]) -> bool:
    """Whether a track event of one of the trigger's types starts it."""
    # Events recorded before origins existed have no key: a person's, like null.
    if event.get("origin") in spec.excluded_origins:
        return False
    if event["type"] == TRACK_MODIFIED and spec.fields is not None:
        return not set(spec.fields).isdisjoint(event["changed"])
    return True


def look(conn: sqlite3.Connection, spec: TriggerConfig, epoch: str) -> Look:
    """The matching events past the trigger's cursor, in one read transaction of `conn`."""
    with snapshot(conn):
        stored = journal.cursor(conn, cursor_name(spec.name))
        head = journal.head(conn)
        if stored is None:
            # A new trigger starts from the library as it is once it is built: it is not
            # handed the history, nor the build as a resync.
            built = journal.meta_value(conn, journal.SNAPSHOT_BUILT)
            return Look(
                None,
                head,
                [],
                False,
                building=feed.building(conn),
                built=built if isinstance(built, int) else None,
            )
        try:
            resync = feed.gap_reason(conn, epoch, epoch, stored) is not None
        except feed.CursorError:
            resync = True  # a cursor past the head: this database never got there
        if resync:
            return Look(stored, head, [], True)
        events: list[dict[str, Any]] = []
        position = stored
        while True:
            rows = journal.read(conn, position, _PAGE, spec.types)
            for seq, _kind, body in rows:
                event = feed.wire_row(seq, body, epoch)
                if matches(spec, event):
                    events.append(event)
                    if len(events) == MAX_EVENTS:
                        return Look(stored, seq, events, False)
            if len(rows) < _PAGE:
                break
            position = rows[-1][0]
        # Past the last matching event lie only events it does not want, up to the head.
        return Look(stored, events[-1]["seq"] if events else head, events, False)


def _set_cursor(conn: sqlite3.Connection, name: str, seq: int) -> None:
    journal.set_cursor(conn, name, seq, time.time())


@dataclass(frozen=True, slots=True)
class LastRun:
    started_at: float
    duration_seconds: float
    exit_status: int | None
    timed_out: bool
    events: int


class Trigger:
    """One configured trigger: its schedule, its runs and its cursor."""

    def __init__(self, spec: TriggerConfig, db: Database, writer: Writer, socket: Path) -> None:
        self.spec = spec
        self._db = db
        self._writer = writer
        self._socket = socket
        # Set by every commit of track events.
        self.wake = Signal()
        self.state = "idle"
        self.pending = 0
        self.last_run: LastRun | None = None
        # When the next run may start (time.time()), while waiting or backing off.
        self.next_start: float | None = None
        self._failures = 0
        self._retry_at = -math.inf
        self._last_start = -math.inf
        # The newest matching event seen, and when it was first seen (monotonic).
        self._newest = 0
        self._newest_at = -math.inf
        # Whether its first look found the library being built (see `_step`).
        self._after_build = False
        # Paused over the socket (kept in memory only: a restart resumes every trigger).
        self.paused = False
        # A run asked for over the socket: None, "pending" (if anything is) or "force".
        self._asked: str | None = None

    def as_dict(self) -> dict[str, Any]:
        last = self.last_run
        return {
            "name": self.spec.name,
            "state": self.state,
            "pending": self.pending,
            "last_started_at": last.started_at if last else None,
            "last_duration_seconds": round(last.duration_seconds, 3) if last else None,
            "last_exit_status": last.exit_status if last else None,
            "last_timed_out": last.timed_out if last else None,
            "next_start": self.next_start,
        }

    def ask(self, *, force: bool) -> str | None:
        """Start a run now, without waiting for the settle, the interval or the backoff: with
        the pending events, or with none when `force`. Returns why it will not (None: it
        will)."""
        if self.state == "running":
            return "it is running now (one run at a time)"
        if self.paused:
            return "it is paused; resume it first"
        if not force and not self.pending:
            return "no events are pending for it (force runs it anyway)"
        self._asked = "force" if force else "pending"
        self.wake.set()
        return None

    def pause(self) -> None:
        """Start no run until `resume` (a run going on finishes)."""
        self.paused = True
        self.wake.set()

    def resume(self) -> None:
        self.paused = False
        self.wake.set()

    async def run(self) -> None:
        """Follow the journal until cancelled, running the command when it is due."""
        while True:
            seen = self.wake.count
            try:
                due = await self._step()
            except DatabaseUnavailable as err:
                # The cursor could not move: the next look finds the same events.
                log.warning("trigger_cursor_not_moved", trigger=self.spec.name, error=str(err))
                due = time.monotonic() + FIRST_BACKOFF_SECONDS
            except Exception:
                # Catch site 1: a bug in one round must not stop the trigger for good.
                log.exception("trigger_failed", trigger=self.spec.name)
                due = time.monotonic() + FIRST_BACKOFF_SECONDS
            if due is None:
                await self.wake.wait_past(seen)
                continue
            with anyio.move_on_after(max(due - time.monotonic(), 0.0)):
                await self.wake.wait_past(seen)

    async def _step(self) -> float | None:
        """Look past the cursor and run the command if it is due; return when to look again
        without a new event (None: only after one)."""
        if self.paused:
            self.state, self.next_start, self._asked = "paused", None, None
            return None
        found = await anyio.to_thread.run_sync(self._look)
        self.pending = len(found.events)
        asked, self._asked = self._asked, None
        if found.cursor is None:
            if found.building:
                # The build commits no track events, so the first edit after it is what wakes
                # this trigger: it starts from the build's position then, not from that edit.
                self._after_build = True
                self.state, self.next_start = "idle", None
                return None
            start = found.built if self._after_build and found.built is not None else found.upto
            await self._move_cursor(start)
            return time.monotonic()
        if asked == "force" and not found.events and not found.resync:
            # Asked for over the socket: a run with no events (MUSICD_EVENTS=0).
            await self._start(found)
            return time.monotonic()
        if not found.events and not found.resync:
            # Nothing to hand over: the cursor passes what does not match, so the trim is not
            # held back by it.
            if found.upto != found.cursor:
                await self._move_cursor(found.upto)
            self.state, self.next_start = "idle", None
            return None
        now = time.monotonic()
        newest = found.events[-1]["seq"] if found.events else found.upto
        if newest > self._newest:
            self._newest, self._newest_at = newest, now
        due = max(
            self._newest_at + self.spec.settle_seconds,
            self._last_start + self.spec.min_interval_seconds,
            self._retry_at,
        )
        if now < due and asked is None:
            self.state = "backing-off" if due == self._retry_at else "waiting"
            self.next_start = time.time() + (due - now)
            return due
        await self._start(found)
        # Look again at once: a backlog goes on, a failure waits for its backoff.
        return time.monotonic()

    async def _move_cursor(self, seq: int) -> None:
        await self._writer.submit(partial(_set_cursor, name=cursor_name(self.spec.name), seq=seq))

    def _look(self) -> Look:
        with self._db.reading() as conn:
            return look(conn, self.spec, self._db.epoch)

    async def _start(self, found: Look) -> None:
        name = self.spec.name
        self.state, self.next_start = "running", None
        self._last_start = time.monotonic()
        started_at = time.time()
        stdin = await anyio.to_thread.run_sync(stdin_file, found.events)
        epoch = self._db.epoch
        env = command_env(
            name,
            self._socket,
            feed.encode_cursor(epoch, found.cursor or 0),
            feed.encode_cursor(epoch, found.upto),
            len(found.events),
            resync=found.resync,
        )
        try:
            outcome = await run_command(
                name, self.spec.command, env, stdin, self.spec.timeout_seconds
            )
        finally:
            stdin.close()
        committed = outcome.succeeded
        if committed:
            try:
                await self._move_cursor(found.upto)
            except DatabaseUnavailable as err:
                log.warning("trigger_cursor_not_moved", trigger=name, error=str(err))
                committed = False
        if committed:
            self._failures, self._retry_at = 0, -math.inf
        else:
            self._failures += 1
            self._retry_at = time.monotonic() + backoff_seconds(self._failures)
        self.last_run = LastRun(
            started_at,
            outcome.duration_seconds,
            outcome.exit_status,
            outcome.timed_out,
            len(found.events),
        )
        self._report(found, outcome, committed)

    def _report(self, found: Look, outcome: Outcome, committed: bool) -> None:
        fields: dict[str, Any] = {
            "trigger": self.spec.name,
            "exit_status": outcome.exit_status,
            "timed_out": outcome.timed_out,
            "duration_seconds": round(outcome.duration_seconds, 3),
            "events": len(found.events),
            "resync": found.resync,
            "committed": committed,
            "dropped_output_lines": outcome.dropped_lines,
        }
        if outcome.error is not None:
            fields["error"] = outcome.error
        if committed:
            log.info("trigger_finished", **fields)
        else:
            retry = backoff_seconds(self._failures)
            log.warning("trigger_finished", **fields, retry_in_seconds=retry)


class Triggers:
    """Every configured trigger, woken by the journal's signal."""

    def __init__(
        self,
        specs: Sequence[TriggerConfig],
        refused: str | None,
        db: Database,
        writer: Writer,
        signal: Signal,
        socket: Path,
    ) -> None:
        self._signal = signal
        self.refused = refused
        self.items = {spec.name: Trigger(spec, db, writer, socket) for spec in specs}

    async def run(self) -> None:
        """Run every trigger until cancelled (a running command's group is stopped then)."""
        if self.refused is not None:
            log.warning("triggers_refused", reason=self.refused)
        if not self.items:
            return
        async with anyio.create_task_group() as tg:
            for trigger in self.items.values():
                tg.start_soon(trigger.run)
            # One waiter on the journal's signal hands each wake-up to every trigger.
            while True:
                seen = self._signal.count
                await self._signal.wait_past(seen)
                for trigger in self.items.values():
                    trigger.wake.set()

    def get(self, name: str) -> Trigger | None:
        return self.items.get(name)

    def listed(self) -> dict[str, Any]:
        """`triggers.list`: every trigger as it is now, and why the config's were refused."""
        return {"triggers": [t.as_dict() for t in self.items.values()], "refused": self.refused}

    def as_dict(self) -> dict[str, Any]:
        """For `status`: each trigger's state, and why the config's triggers were refused."""
        return {
            "triggers": {name: t.state for name, t in self.items.items()},
            "triggers_refused": self.refused,
        }
