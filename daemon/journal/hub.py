"""Fan-out of events to socket subscribers: a slow subscriber is cut off, never waited for."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.events import AnyEvent, ObserverEvent

log = structlog.get_logger(__name__)

# A subscriber that is still reading, only slower than a burst of events arrives, may fall this
# many times `max_queue` behind before it is cut off anyway: the bound on what one can hold.
HARD_LIMIT_FACTOR = 10


@dataclass(eq=False)
class Subscription:
    """One subscriber: a bounded stream of events, and why it was cut off (if it was)."""

    types: frozenset[str] | None
    send: MemoryObjectSendStream[AnyEvent]
    receive: MemoryObjectReceiveStream[AnyEvent]
    overflowed: bool = False
    delivered: int = 0
    label: str = ""
    # Its backlog right after the last batch it was given: less now means it has been reading.
    backlog: int = 0
    # The origins whose track events it leaves out (a program's own writes).
    exclude_origins: frozenset[str] = frozenset()

    def wants(self, event: AnyEvent) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        return isinstance(event, ObserverEvent) or event.origin not in self.exclude_origins

    def give(self, events: list[AnyEvent], backlog: int) -> None:
        """Queue a batch's events for it (`backlog`: what it had not taken yet)."""
        for event in events:
            self.send.send_nowait(event)
        self.delivered += len(events)
        self.backlog = backlog + len(events)

    def cut_off(self) -> None:
        self.overflowed = True


@dataclass
class EventHub:
    """Hands each batch to every subscriber that wants its events, in delivery order.

    deliver() never waits: a subscriber that falls too far behind is cut off instead.
    """

    max_queue: int = 1000
    _subs: set[Subscription] = field(default_factory=set)
    emitted: dict[str, int] = field(default_factory=dict)

    def subscribe(
        self,
        types: Iterable[str] | None = None,
        *,
        label: str = "",
        exclude_origins: Iterable[str] = (),
    ) -> Subscription:
        # The stream itself is unbounded; deliver() enforces the limit per batch (see there).
        send, receive = anyio.create_memory_object_stream[AnyEvent](math.inf)
        sub = Subscription(
            frozenset(types) if types is not None else None,
            send,
            receive,
            label=label,
            exclude_origins=frozenset(exclude_origins),
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

    def as_dict(self) -> dict[str, int]:
        """What `status` shows of the hub."""
        return {"subscribers": len(self._subs)}

    def deliver(self, events: Iterable[AnyEvent]) -> None:
        """Deliver one batch (one scan's events) to every subscriber that wants them.

        A subscriber is judged only by a batch that holds events for it (an event it does not
        want cannot make it fall behind). It is cut off when it is `max_queue` events behind
        and has taken nothing since its previous batch (it stopped reading), or when it is
        `HARD_LIMIT_FACTOR` times that behind however it reads. So one that keeps up receives
        a whole batch even when one scan produced more than `max_queue` events (a re-tag of
        thousands of tracks), one that reads slowly through it is not dropped by the next
        little batch, and memory stays bounded.
        """
        batch = list(events)
        for event in batch:
            self.emitted[event.type] = self.emitted.get(event.type, 0) + 1
        for sub in list(self._subs):
            filtered = sub.types is not None or sub.exclude_origins
            wanted = [e for e in batch if sub.wants(e)] if filtered else batch
            if not wanted:
                continue
            backlog = sub.send.statistics().current_buffer_used
            stalled = backlog >= self.max_queue and backlog >= sub.backlog
            if stalled or backlog >= self.max_queue * HARD_LIMIT_FACTOR:
                # Cut it off rather than hold the daemon (or its memory).
                sub.cut_off()
                log.warning(
                    "subscriber_dropped",
                    subscriber=sub.label,
                    queued=backlog,
                    reason="queue_full" if stalled else "too_far_behind",
                )
                self.unsubscribe(sub)
                continue
            try:
                sub.give(wanted, backlog)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.unsubscribe(sub)

    def close(self) -> None:
        for sub in list(self._subs):
            self.unsubscribe(sub)
