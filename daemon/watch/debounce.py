"""From "look again" signals to settled bursts: `async for burst in debouncer.settled(...)`.

The watcher (and a read that finished late) notify a `Wakeup`; a save is many file events, and
a sync tool may write for minutes. The `Debouncer` turns those notifications into one `Burst`
once they stop for `library.settle_seconds`, or `library.settle_max_seconds` after the first
(a file that never stops changing is still looked at), as watchfiles' `awatch` yields its
debounced changes. Nothing runs while nothing is notified, except the caller's own safety-net
timeout, after which an empty burst is yielded (watchfiles' `yield_on_timeout`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import anyio


@dataclass
class Wakeup:
    """A re-armable, coalescing signal with the reasons it was notified for since take()."""

    _event: anyio.Event = field(default_factory=anyio.Event)
    reasons: set[str] = field(default_factory=set)
    forced: bool = False

    def notify(self, reason: str, *, force: bool = False) -> None:
        self.reasons.add(reason)
        self.forced = self.forced or force
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def take(self) -> tuple[set[str], bool]:
        """Return and clear what accumulated; the next notify() wakes wait() again."""
        reasons, forced = self.reasons, self.forced
        self.reasons, self.forced = set(), False
        self._event = anyio.Event()
        return reasons, forced


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
    """Settles the notifications of one `Wakeup` into bursts."""

    def __init__(self, wakeup: Wakeup, *, settle_seconds: float, settle_max_seconds: float):
        self.wakeup = wakeup
        self.settle_seconds = settle_seconds
        self.settle_max_seconds = settle_max_seconds

    async def settled(self, *, quiet_seconds: Callable[[], float]) -> AsyncGenerator[Burst, None]:
        """Each settled burst; an empty one after `quiet_seconds()` without a notification.

        `quiet_seconds` is asked again before each wait, so a caller can shorten it (a retry).
        """
        while True:
            with anyio.move_on_after(quiet_seconds()):
                await self.wakeup.wait()
            yield await self._settle() if self.wakeup.is_set else Burst()

    async def _settle(self) -> Burst:
        """Wait for `settle_seconds` of quiet, but no longer than `settle_max_seconds` in all."""
        first = anyio.current_time()
        reasons: set[str] = set()
        forced = False
        while True:
            more, force = self.wakeup.take()
            reasons |= more
            forced = forced or force
            remaining = self.settle_max_seconds - (anyio.current_time() - first)
            if remaining <= 0 or self.settle_seconds <= 0:
                return Burst(reasons=frozenset(reasons), forced=forced)
            with anyio.move_on_after(min(self.settle_seconds, remaining)):
                await self.wakeup.wait()
            if not self.wakeup.is_set:
                return Burst(reasons=frozenset(reasons), forced=forced)
