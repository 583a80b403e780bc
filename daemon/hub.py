"""Fan-out of events to socket subscribers: a slow subscriber is cut off, never waited for."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.events import AnyEvent

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class Subscription:
    """One subscriber: a bounded stream of events, and why it was cut off (if it was)."""

    types: frozenset[str] | None
    send: MemoryObjectSendStream[AnyEvent]
    receive: MemoryObjectReceiveStream[AnyEvent]
    overflowed: bool = False
    delivered: int = 0
    label: str = ""

    def wants(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types


@dataclass
class EventHub:
    """Delivers every published event to every matching subscriber, in order, without blocking."""

    max_queue: int = 1000
    _subs: set[Subscription] = field(default_factory=set)
    emitted: dict[str, int] = field(default_factory=dict)

    def subscribe(self, types: Iterable[str] | None = None, *, label: str = "") -> Subscription:
        # The stream itself is unbounded; publish() enforces the limit per batch (see there).
        send, receive = anyio.create_memory_object_stream[AnyEvent](math.inf)
        sub = Subscription(
            frozenset(types) if types is not None else None, send, receive, label=label
        )
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            sub.send.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def publish(self, events: Iterable[AnyEvent]) -> None:
        """Deliver one batch (one scan's events) to every subscriber that wants them.

        The limit is on the backlog a subscriber had *before* the batch: one that has fallen
        `max_queue` events behind is cut off, but a subscriber that keeps up receives a whole
        batch even when one scan produced more than `max_queue` events (a re-tag of thousands
        of tracks). Memory stays bounded by `max_queue` plus one batch, which is in memory
        anyway.
        """
        batch = list(events)
        for event in batch:
            self.emitted[event.type] = self.emitted.get(event.type, 0) + 1
        for sub in list(self._subs):
            if sub.send.statistics().current_buffer_used >= self.max_queue:
                # The subscriber stopped reading: cut it off rather than hold the daemon.
                sub.overflowed = True
                log.warning(
                    "subscriber_dropped",
                    subscriber=sub.label,
                    queued=self.max_queue,
                    reason="queue_full",
                )
                self.unsubscribe(sub)
                continue
            try:
                for event in batch:
                    if sub.wants(event.type):
                        sub.send.send_nowait(event)
                        sub.delivered += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.unsubscribe(sub)

    def close(self) -> None:
        for sub in list(self._subs):
            self.unsubscribe(sub)
