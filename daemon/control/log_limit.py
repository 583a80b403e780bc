"""How many lines clients can make the daemon log: a few per connection and a few in all per
interval, the rest counted and told in one line per interval.

A client that sends 500,000 bad requests would otherwise write 500,000 `request_rejected`
warnings and rotate the daemon's own history (`daemon_started`, the scans) out of every log
file. Lines over the allowance are not written; the interval's summary line
(`request_lines_suppressed`) says how many were not, and whose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import anyio
import structlog

log = structlog.get_logger("daemon.control.server")

# Lines one connection may cause per interval, and all connections together.
PER_CONNECTION: Final = 10
TOTAL: Final = 60
INTERVAL_SECONDS: Final = 60.0
# The summary names at most this many connections (the ones with most lines not written).
NAMED_IN_SUMMARY: Final = 10
# Connections counted one by one in an interval; later ones are counted together.
TRACKED: Final = 256


class LogLimit:
    """The allowance of lines caused by clients, per connection and in all, per interval."""

    def __init__(
        self,
        per_connection: int = PER_CONNECTION,
        total: int = TOTAL,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_connection = per_connection
        self.total = total
        self.interval = interval
        self._clock = clock
        self._window_end = clock() + interval
        self._written: dict[int, int] = {}
        self._written_total = 0
        self._suppressed: dict[int, int] = {}
        self._suppressed_untracked = 0
        self._pending = anyio.Event()

    def allow(self, conn: int) -> bool:
        """Whether connection `conn` may write one more line now (if not, it is counted)."""
        if self._clock() >= self._window_end:
            self.flush()
        written = self._written.get(conn, 0)
        if written < self.per_connection and self._written_total < self.total:
            if written or len(self._written) < TRACKED:
                self._written[conn] = written + 1
            self._written_total += 1
            return True
        if conn in self._suppressed or len(self._suppressed) < TRACKED:
            self._suppressed[conn] = self._suppressed.get(conn, 0) + 1
        else:
            self._suppressed_untracked += 1
        self._pending.set()
        return False

    @property
    def suppressed(self) -> int:
        return sum(self._suppressed.values()) + self._suppressed_untracked

    def flush(self) -> None:
        """Write the summary of the lines not written, if any, and start a new interval."""
        if self.suppressed:
            named = sorted(self._suppressed.items(), key=lambda item: -item[1])[:NAMED_IN_SUMMARY]
            log.warning(
                "request_lines_suppressed",
                lines=self.suppressed,
                connections=len(self._suppressed) + (1 if self._suppressed_untracked else 0),
                by_conn={str(conn): count for conn, count in named},
                interval_seconds=self.interval,
            )
        self._window_end = self._clock() + self.interval
        self._written.clear()
        self._written_total = 0
        self._suppressed.clear()
        self._suppressed_untracked = 0
        self._pending = anyio.Event()

    async def run(self) -> None:
        """Write each interval's summary once it ends (sleeps while nothing was suppressed);
        the last one when cancelled."""
        try:
            while True:
                await self._pending.wait()
                await anyio.sleep(max(0.0, self._window_end - self._clock()))
                self.flush()
        finally:
            self.flush()
