"""How far the running scan has got: written by the reader's worker thread, read by `status`.

A first scan of a big library takes tens of seconds; without this, `status` said "0 tracks, last
scan never" all along. The reader reports per chunk it parsed (1 MiB), never per byte or track,
so the cost is a lock and a few stores per chunk. The scanner makes its progress object the
*current* one for the scan (a context variable: anyio copies the context into the worker thread),
so readers need no extra parameter and work unchanged without one.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_current: contextvars.ContextVar[ScanProgress | None] = contextvars.ContextVar(
    "musicd_scan_progress", default=None
)

# The scan running in this process, for the console progress line of `musicd run`. Waiters are
# woken when a scan starts or ends, so nothing polls while the daemon is idle.
_active: ScanProgress | None = None
_changed = threading.Condition()


def current() -> ScanProgress | None:
    """The progress object of the scan this code runs for, if any."""
    return _current.get()


def active() -> ScanProgress | None:
    """The scan running in this process right now, if any."""
    return _active


def wait_for_change(timeout: float | None) -> None:
    """Block until a scan starts or ends (or `timeout` passes)."""
    with _changed:
        _changed.wait(timeout)


def wait_for_scan(stop: Callable[[], bool]) -> None:
    """Block until a scan runs in this process, or `stop()` is true after `wake_waiters()`."""
    with _changed:
        _changed.wait_for(lambda: _active is not None or stop())


def wake_waiters() -> None:
    """Wake every `wait_for_change` (a progress display that is being stopped)."""
    with _changed:
        _changed.notify_all()


def _set_active(progress: ScanProgress | None) -> None:
    global _active
    with _changed:
        _active = progress
        _changed.notify_all()


class ScanProgress:
    """Bytes and tracks done of how many, since when; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
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
        """Mark a scan as running for the duration of the block, and make this the current one."""
        with self._lock:
            self._running = True
            self._reason = reason
            self._started_at = time.time()
            self._started = self._clock()
            self._bytes_done = self._tracks_done = 0
            self._bytes_total = None
            self._tracks_expected = expected_tracks or None
        token = _current.set(self)
        _set_active(self)
        try:
            yield
        finally:
            _current.reset(token)
            with self._lock:
                self._running = False
            _set_active(None)

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
