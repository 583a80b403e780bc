"""Follow the journal: wake on new track events, apply what is new, move the cursor, repeat."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

import anyio
import structlog

from daemon.events import TrackEvent
from daemon.journal.signal import Signal
from daemon.stores import journal
from daemon.stores.writer import DatabaseUnavailable, Writer

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Events applied per transaction: bounds one transaction's size after a mass change.
ROUND_EVENTS = 5000
MAX_RETRY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Round(Generic[T]):
    rows: int
    applied: int
    last_seq: int
    result: T | None


Apply = Callable[[sqlite3.Connection, Sequence[TrackEvent]], T]


def apply_round(conn: sqlite3.Connection, consumer: str, apply: Apply[T]) -> Round[T]:
    """Apply the next events after `consumer`'s cursor and move the cursor, in the caller's
    transaction (so both happen, or neither)."""
    stored = journal.cursor(conn, consumer)
    position = stored or 0
    rows = journal.read(conn, position, ROUND_EVENTS)
    if not rows:
        if stored is None:
            # Every consumer has its row from the start (at start-up's catch-up), not from its
            # first track event: `stats`, the trim and programs reading the file see it.
            position = journal.head(conn)
            journal.set_cursor(conn, consumer, position, time.time())
        return Round(0, 0, position, None)
    events = [
        e
        for e in (journal.event_from_row(*row) for row in rows)
        if e.type in journal.TRACK_EVENT_TYPES
    ]
    result = apply(conn, events)  # type: ignore[arg-type]
    last = rows[-1][0]
    journal.set_cursor(conn, consumer, last, time.time())
    return Round(len(rows), len(events), last, result)


async def catch_up(
    writer: Writer, consumer: str, apply: Apply[T], report: Callable[[Round[T]], None]
) -> None:
    """Apply rounds until the consumer has reached the journal's end."""
    while True:
        done = await writer.submit(partial(apply_round, consumer=consumer, apply=apply))
        if done.result is not None:
            report(done)
        if done.rows < ROUND_EVENTS:
            return


async def follow_journal(
    writer: Writer,
    signal: Signal,
    consumer: str,
    apply: Apply[T],
    report: Callable[[Round[T]], None],
) -> None:
    """Run until cancelled; a round that cannot be committed is retried with a growing delay.

    `signal` is set after every commit that recorded track events."""
    failures = 0
    while True:
        seen = signal.count
        try:
            await catch_up(writer, consumer, apply, report)
        except DatabaseUnavailable as err:
            failures += 1
            delay = min(0.5 * 2**failures, MAX_RETRY_SECONDS)
            log.warning(
                "journal_consumer_retrying", consumer=consumer, error=str(err), in_seconds=delay
            )
            await anyio.sleep(delay)
            continue
        except Exception:
            # Catch site 1: a bug in one round must not stop the consumer for good.
            log.exception("journal_consumer_failed", consumer=consumer)
            failures += 1
            await anyio.sleep(min(0.5 * 2**failures, MAX_RETRY_SECONDS))
            continue
        failures = 0
        await signal.wait_past(seen)
