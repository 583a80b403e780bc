"""The journal's consumers inside the daemon, run as one: each is a `Consumer` (its cursor's
name, what it applies, how it reports a round), and `JournalConsumers` catches them all up at
start-up, follows the journal while the daemon runs and drains them at shutdown.

Adding a consumer is one entry in the list the daemon is built with (`app.build`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import anyio

from daemon.journal.follow import Apply, Round, catch_up, follow_journal
from daemon.journal.signal import Signal
from daemon.stores import journal
from daemon.stores.writer import Writer

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Consumer(Generic[T]):
    """One consumer of the journal's track events."""

    # Its cursor's name (reserved prefix `musicd.`).
    name: str
    # Applies a round's track events in the transaction that moves its cursor.
    apply: Apply[T]
    # Logs what a round did, on the event loop after the commit.
    report: Callable[[Round[T]], None]


class JournalConsumers:
    """Every consumer of the journal, on the one writer, woken by the one signal."""

    def __init__(self, writer: Writer, signal: Signal, consumers: Sequence[Consumer[Any]]) -> None:
        self._writer = writer
        self._signal = signal
        self._consumers = tuple(consumers)
        # The last seq each consumer applied (known once it applied a round this run).
        self._applied: dict[str, int] = {}

    async def catch_up(self) -> None:
        """Bring every consumer to the journal's end, one after another."""
        for consumer in self._consumers:
            await catch_up(
                self._writer, consumer.name, consumer.apply, partial(self._report, consumer)
            )

    async def follow(self) -> None:
        """Follow the journal with every consumer until cancelled."""
        async with anyio.create_task_group() as tg:
            for consumer in self._consumers:
                tg.start_soon(
                    follow_journal,
                    self._writer,
                    self._signal,
                    consumer.name,
                    consumer.apply,
                    partial(self._report, consumer),
                )

    def behind(self, conn: sqlite3.Connection) -> dict[str, int]:
        """How many track events each consumer has yet to apply."""
        return {
            name: journal.pending_track_events(conn, seq) for name, seq in self._applied.items()
        }

    def _report(self, consumer: Consumer[T], done: Round[T]) -> None:
        self._applied[consumer.name] = done.last_seq
        consumer.report(done)
