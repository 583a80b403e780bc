"""One library read on a thread that can be left behind.

A read can block with no bound: on a macOS privacy prompt nobody sees, on a network volume that
stopped answering, on a Music.app that is busy. anyio's worker threads are not daemon threads,
so an abandoned read there keeps the process alive after `run()` returns, past launchd's
`ExitTimeOut`, until launchd kills it. A `ReadJob` runs the reader on its own daemon thread:
the scanner waits for it with a deadline, reports a read past it as stalled, and keeps the job
(never starting a second read of the same library next to it). When the read ends at last, the
job pokes the loop; at shutdown it is simply left, and the process exits without it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from daemon.library import LibraryRead

__all__ = ["ReadJob", "run_abandonable"]

T = TypeVar("T")


async def run_abandonable(work: Callable[[], T]) -> T:
    """`work()` on a daemon thread; cancelling the wait leaves the thread behind, never joined.

    For calls on the library that can block with no bound (stat or realpath on a network
    volume that stopped answering): the event loop stays free, and the process can exit.
    """
    done = anyio.Event()
    box: list[tuple[bool, object]] = []
    token = anyio.lowlevel.current_token()

    def run() -> None:
        try:
            box.append((True, work()))
        except BaseException as err:  # handed to the loop as it is
            box.append((False, err))
        try:
            anyio.from_thread.run_sync(done.set, token=token)
        except (anyio.RunFinishedError, RuntimeError):
            pass  # the loop is gone: nobody waits any more

    threading.Thread(target=run, name="musicd-library-call", daemon=True).start()
    await done.wait()
    ok, value = box[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


class ReadJob:
    """Runs `reader()` once on a daemon thread; `done` is set on the loop when it returns."""

    def __init__(
        self, reader: Callable[[], LibraryRead], on_late_finish: Callable[[ReadJob], None]
    ) -> None:
        self.started_at = time.time()
        self.done = anyio.Event()
        # Set by the scanner once it stopped waiting: the end of the read is then news.
        self.late = False
        self._reader = reader
        self._on_late_finish = on_late_finish
        self._result: LibraryRead | None = None
        self._error: BaseException | None = None
        self._token = anyio.lowlevel.current_token()
        self._thread = threading.Thread(target=self._run, name="musicd-library-read", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def _run(self) -> None:
        try:
            self._result = self._reader()
        except BaseException as err:  # handed to the loop as it is
            self._error = err
        try:
            anyio.from_thread.run_sync(self._finished, token=self._token)
        except (anyio.RunFinishedError, RuntimeError):
            pass  # the daemon stopped meanwhile: nobody wants this read any more

    def _finished(self) -> None:
        self.done.set()
        if self.late:
            self._on_late_finish(self)

    def outcome(self) -> LibraryRead:
        """The read's result, or its exception raised here (only once `done` is set)."""
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
