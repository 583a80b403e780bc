"""What travels between the scanner and the consumers, and how far each consumer has got."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from daemon.events import AnyEvent, TrackEvent
from daemon.library import FileStat
from daemon.models import Track

# Each consumer's stream holds this many batches; a full stream makes the scanner wait
# (back-pressure), which is what bounds memory during an event storm.
BATCH_BUFFER = 8


@dataclass(frozen=True, slots=True)
class Batch:
    """The result of one scan, as the stores need it."""

    batch_id: int
    events: list[TrackEvent]
    stat: FileStat | None
    full: bool
    scanned_at: float
    last_seq: int
    library_path: str
    # First build with no snapshot on disk: replace the snapshot wholesale and emit nothing.
    replace: dict[str, Track] | None = None


@dataclass
class Progress:
    """Batch ids produced and applied by each store consumer, to flush only consistent cuts.

    The snapshot and the API cache are written together only when every batch produced so far
    has been applied to both: a snapshot that already forgot an album the cache still holds
    answers for would lose that invalidation across a crash.
    """

    produced: int = 0
    merged: int = 0
    invalidated: int = 0
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def _bump(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def mark_produced(self, batch_id: int) -> None:
        self.produced = batch_id
        self._bump()

    def mark_merged(self, batch_id: int) -> None:
        self.merged = batch_id
        self._bump()

    def mark_invalidated(self, batch_id: int) -> None:
        self.invalidated = batch_id
        self._bump()

    @property
    def settled(self) -> bool:
        return self.merged == self.invalidated == self.produced

    @property
    def pending(self) -> int:
        return self.produced - min(self.merged, self.invalidated)

    async def wait_settled(self) -> None:
        while not self.settled:
            await self._changed.wait()


@dataclass
class Fanout:
    """Sends each batch to every store consumer and each event list to the publisher.

    Memory object stream clones load-balance rather than broadcast, so each consumer has a
    stream of its own.
    """

    merger: MemoryObjectSendStream[Batch]
    invalidator: MemoryObjectSendStream[Batch]
    publisher: MemoryObjectSendStream[list[AnyEvent]]
    progress: Progress

    async def send_batch(self, batch: Batch) -> None:
        self.progress.mark_produced(batch.batch_id)
        await self.merger.send(batch)
        await self.invalidator.send(batch)

    async def publish(self, events: list[AnyEvent]) -> None:
        if events:
            await self.publisher.send(events)

    async def aclose(self) -> None:
        for stream in (self.merger, self.invalidator, self.publisher):
            await stream.aclose()
