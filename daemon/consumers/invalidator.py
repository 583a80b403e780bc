"""Drop the cached API answers of every album a scan made stale."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from daemon.events import invalidation_keys
from daemon.pipeline import Batch, Progress
from daemon.stores.api_cache import ApiCache

log = structlog.get_logger(__name__)


def stale_album_keys(batch: Batch) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for event in batch.events:
        keys |= invalidation_keys(event)
    return keys


async def invalidate_cache(
    batches: MemoryObjectReceiveStream[Batch],
    cache: ApiCache,
    progress: Progress,
    on_change: Callable[[], None],
) -> None:
    """Consume batches until the stream closes; each stale album costs O(its entries)."""
    async with batches:
        async for batch in batches:
            try:
                keys = stale_album_keys(batch)
                if keys:
                    removed = cache.invalidate_keys(keys)
                    on_change()
                    log.info(
                        "cache_invalidated",
                        albums=len(keys),
                        entries=removed,
                        sample=[list(k) for k in sorted(keys)[:5]],
                    )
            except Exception:
                log.exception("cache_invalidation_failed", batch=batch.batch_id)
            finally:
                progress.mark_invalidated(batch.batch_id)
