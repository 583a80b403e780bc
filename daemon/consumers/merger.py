"""Apply each scan's deltas to the library snapshot."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from daemon.events import TrackAdded, TrackModified, TrackRemoved
from daemon.pipeline import Batch, Progress
from daemon.stores.delta import DeltaState
from daemon.stores.snapshot import SnapshotStore

log = structlog.get_logger(__name__)


def apply_batch(snapshot: SnapshotStore, batch: Batch) -> None:
    """Merge one batch, keeping the snapshot's order: edits in place, additions appended."""
    if batch.replace is not None:
        snapshot.replace_all(batch.replace)
    for event in batch.events:
        if isinstance(event, TrackRemoved):
            snapshot.remove(event.persistent_id)
        elif isinstance(event, TrackModified):
            snapshot.put(event.new)
        elif isinstance(event, TrackAdded):
            snapshot.put(event.track)
    snapshot.note_scan(
        batch.stat, batch.library_path, full=batch.full, seq=batch.last_seq, now=batch.scanned_at
    )


async def merge_snapshot(
    batches: MemoryObjectReceiveStream[Batch],
    snapshot: SnapshotStore,
    delta: DeltaState,
    progress: Progress,
    on_change: Callable[[], None],
) -> None:
    """Consume batches until the stream closes; `on_change` tells the flusher there is work."""
    async with batches:
        async for batch in batches:
            try:
                apply_batch(snapshot, batch)
                delta.record((e.persistent_id for e in batch.events), batch.scanned_at)
                if batch.events or batch.replace is not None:
                    log.info("snapshot_merged", events=len(batch.events), tracks=len(snapshot))
            except Exception:
                log.exception("snapshot_merge_failed", batch=batch.batch_id)
            finally:
                progress.mark_merged(batch.batch_id)
                on_change()
