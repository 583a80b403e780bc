"""`Signal`: the daemon's one re-armable wake-up, for a task that sleeps until there is work.

Three waits use it: the journal's consumers (woken by every commit of track events), the
periodic checkpoint (woken by every commit) and the settle timer (woken by the watcher). It
lives here, beside the consumers, because `watch/` and `service/` already build on `journal/`.

A bare `anyio.Event` fires once; re-arming it by hand (a new Event after each wake-up) loses a
set that lands between a waiter's look and its wait, and with several waiters one clears what
another has yet to see. A `Signal` counts its sets instead, and each waiter keeps the count it
has dealt with: `seen = signal.count`, do the work, `await signal.wait_past(seen)`.
"""

from __future__ import annotations

import anyio

__all__ = ["Signal"]


class Signal:
    """A count of `set()` calls that tasks can wait to see move.

    `wait_past(seen)` returns once the count is past `seen`: at once when a set came since the
    waiter read `count` (even before the wait began), and once for any number of sets. Each
    waiter keeps its own `seen`, so any number of them share one signal and none takes a
    wake-up from another. Used on the event loop only (an `anyio.Event` is not thread-safe); a
    thread hands a set over with `anyio.from_thread.run_sync(signal.set, token=...)`.
    """

    def __init__(self) -> None:
        self.count = 0
        self._next = anyio.Event()

    def set(self) -> None:
        """Count one more set and wake every waiter."""
        self.count += 1
        self._next.set()
        # Waiters still asleep wait for the set after this one.
        self._next = anyio.Event()

    def is_set_since(self, seen: int) -> bool:
        """Whether a set came after the waiter read `count` as `seen`."""
        return self.count > seen

    async def wait_past(self, seen: int) -> None:
        """Sleep until the count is past `seen` (return at once if it is already)."""
        while self.count <= seen:
            await self._next.wait()
