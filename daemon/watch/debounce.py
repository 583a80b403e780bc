"""From "look again" signals to settled bursts: `async for burst in debouncer.settled(...)`.

The watcher (and a read that finished late) notify the `Debouncer`; a save is many file
events, and a sync tool may write for minutes. The `Debouncer` turns those notifications into
one `Burst` once they stop for `library.settle_seconds`, or `library.settle_max_seconds` after
the first (a file that never stops changing is still looked at), as watchfiles' `awatch`
yields its debounced changes. Nothing runs while nothing is notified, except the caller's own
safety-net timeout, after which an empty burst is yielded (watchfiles' `yield_on_timeout`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import anyio

from daemon.journal.signal import Signal


@dataclass(frozen=True, slots=True, kw_only=True)
class Burst:
    """The notifications of one settled burst; empty when the wait timed out quietly."""

    reasons: frozenset[str] = frozenset()
    # Some notifier asked for a scan even if the library's stat did not change.
    forced: bool = False

    @property
    def reason(self) -> str:
        """The reasons as one string, as scans and their log lines name them."""
        return ",".join(sorted(self.reasons))


class Debouncer:
    """Settles "look again" notifications into bursts; the watcher and the scanner notify it."""

    def __init__(self, *, settle_seconds: float, settle_max_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self.settle_max_seconds = settle_max_seconds
        self._signal = Signal()
        # The notifications since the last burst took them (`_seen`: the signal's count then).
        self._seen = 0
        self._reasons: set[str] = set()
        self._forced = False

    def notify(self, reason: str, *, force: bool = False) -> None:
        """Ask for a look at the library, for `reason`; `force`: scan even if its stat did not
        change. On the event loop."""
        self._reasons.add(reason)
        self._forced = self._forced or force
        self._signal.set()

    async def settled(self, *, quiet_seconds: Callable[[], float]) -> AsyncGenerator[Burst, None]:
        """Each settled burst; an empty one after `quiet_seconds()` without a notification.

        `quiet_seconds` is asked again before each wait, so a caller can shorten it (a retry).
        """
        while True:
            with anyio.move_on_after(quiet_seconds()):
                await self._signal.wait_past(self._seen)
            yield await self._settle() if self._signal.is_set_since(self._seen) else Burst()

    async def _settle(self) -> Burst:
        """Wait for `settle_seconds` of quiet, but no longer than `settle_max_seconds` in all."""
        first = anyio.current_time()
        reasons: set[str] = set()
        forced = False
        while True:
            reasons |= self._reasons
            forced = forced or self._forced
            self._reasons, self._forced = set(), False
            self._seen = self._signal.count
            remaining = self.settle_max_seconds - (anyio.current_time() - first)
            if remaining <= 0 or self.settle_seconds <= 0:
                return Burst(reasons=frozenset(reasons), forced=forced)
            with anyio.move_on_after(min(self.settle_seconds, remaining)):
                await self._signal.wait_past(self._seen)
            if not self._signal.is_set_since(self._seen):
                return Burst(reasons=frozenset(reasons), forced=forced)
