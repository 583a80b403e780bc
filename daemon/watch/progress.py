"""How far the running scan has got: written by the reader's thread, read by `status`.

A first scan of a big library takes tens of seconds; without this, `status` said "0 tracks, last
scan never" all along. The scanner hands `ScanProgress.update` to each read as its progress
callback, and the reader reports per chunk it parsed (1 MiB), never per byte or track, so the
cost is a lock and a few stores per chunk. `musicd run`'s progress line waits on the same object
for a scan to start or end, so nothing polls while the daemon is idle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class ScanProgress:
    """Bytes and tracks done of how many, since when; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # Notified when a scan starts or ends (not on updates: a display redraws on its own).
        self._changed = threading.Condition(self._lock)
        self._running = False
        self._reason = ""
        self._started_at = 0.0  # wall clock, for people
        self._started = 0.0  # monotonic, for rates
        self._bytes_done = 0
        self._bytes_total: int | None = None
        self._tracks_done = 0
        self._tracks_expected: int | None = None

    @contextmanager
    def scanning(self, reason: str, expected_tracks: int | None) -> Iterator[None]:
        """Mark a scan as running for the duration of the block."""
        with self._changed:
            self._running = True
            self._reason = reason
            self._started_at = time.time()
            self._started = self._clock()
            self._bytes_done = self._tracks_done = 0
            self._bytes_total = None
            self._tracks_expected = expected_tracks or None
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._running = False
                self._changed.notify_all()

    def wait_for_change(self, timeout: float | None) -> None:
        """Block until a scan starts or ends (or `timeout` passes); from a thread of its own."""
        with self._changed:
            self._changed.wait(timeout)

    def wait_for_scan(self, stop: Callable[[], bool]) -> None:
        """Block until a scan runs, or `stop()` is true after `wake_waiters()`."""
        with self._changed:
            self._changed.wait_for(lambda: self._running or stop())

    def wake_waiters(self) -> None:
        """Wake every waiter (a progress display that is being stopped)."""
        with self._changed:
            self._changed.notify_all()

    def update(
        self,
        *,
        bytes_done: int | None = None,
        bytes_total: int | None = None,
        tracks_done: int | None = None,
    ) -> None:
        """Absolute values (a re-read after a change during the read starts again from 0)."""
        with self._lock:
            if bytes_done is not None:
                self._bytes_done = bytes_done
            if bytes_total is not None:
                self._bytes_total = bytes_total
            if tracks_done is not None:
                self._tracks_done = tracks_done

    def snapshot(self) -> dict[str, Any] | None:
        """What `status` shows as `scan_in_progress`; None when no scan runs."""
        with self._lock:
            if not self._running:
                return None
            elapsed = max(self._clock() - self._started, 1e-9)
            done, total = self._bytes_done, self._bytes_total
            tracks, expected = self._tracks_done, self._tracks_expected
            reason, started_at = self._reason, self._started_at
        rate = done / elapsed if done else None
        eta = None
        fraction = None
        if total:
            fraction = min(done / total, 1.0)
            if rate:
                eta = max(total - done, 0) / rate
        elif expected and tracks:
            fraction = min(tracks / expected, 1.0)
            eta = max(expected - tracks, 0) / (tracks / elapsed)
        return {
            "reason": reason,
            "started_at": started_at,
            "elapsed_seconds": round(elapsed, 3),
            "bytes_done": done,
            "bytes_total": total,
            "tracks_done": tracks,
            "tracks_expected": expected,
            "fraction": None if fraction is None else round(fraction, 4),
            "bytes_per_second": None if rate is None else round(rate),
            "tracks_per_second": round(tracks / elapsed) if tracks else None,
            "eta_seconds": None if eta is None else round(eta, 1),
        }
