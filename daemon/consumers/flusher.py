"""The periodic flusher: when something changed, wait `flush_interval_seconds`, then flush.

It sleeps on an event while nothing is dirty, so an idle daemon never wakes up for it. A failed
flush (disk full, read-only directory) is retried with a growing delay until it succeeds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog

log = structlog.get_logger(__name__)

MAX_RETRY_SECONDS = 300.0


class DirtySignal:
    """Set whenever a store changes; the flusher waits on it."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()


async def flush_periodically(
    dirty: DirtySignal,
    flush: Callable[[str], Awaitable[bool]],
    interval_seconds: float,
) -> None:
    """Run until cancelled. `flush(reason)` returns False when the flush failed."""
    failures = 0
    while True:
        await dirty.wait()
        # Coalesce: everything that changes during the interval goes out in one flush.
        await anyio.sleep(interval_seconds)
        dirty.clear()
        if await flush("interval"):
            failures = 0
            continue
        failures += 1
        delay = min(max(interval_seconds, 1.0) * 2**failures, MAX_RETRY_SECONDS)
        log.warning("flush_retry_scheduled", in_seconds=delay, failures=failures)
        dirty.set()
        await anyio.sleep(delay)
