"""Blocking work on a thread that can be left behind: one library read, a stat, a checkpoint.

A read can block with no bound: on a macOS privacy prompt nobody sees, on a network volume that
stopped answering, on a Music.app that is busy. anyio's worker threads are not daemon threads,
so an abandoned read there keeps the process alive after `run()` returns, past launchd's
`ExitTimeOut`, until launchd kills it. A `ReadJob` runs its work on its own daemon thread and
hands the end back to the loop: the scanner waits for a read with a deadline, reports a read
past it as stalled, and keeps the job (never starting a second read of the same library next
to it); when the read ends at last, the job pokes the loop. At shutdown it is simply left, and
the process exits without it. `run_abandonable` is the same for a call awaited in place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["ReadJob", "run_abandonable"]

T = TypeVar("T")


class ReadJob(Generic[T]):
    """Runs `work()` once on a daemon thread; `done` is set on the loop when it returns.

    `on_late_finish` is called on the loop too, when the work ends after its waiter set
    `late` (it stopped waiting). Made on the event loop.
    """

    def __init__(
        self,
        work: Callable[[], T],
        *,
        name: str = "musicd-library-read",
        on_late_finish: Callable[[ReadJob[T]], None] | None = None,
    ) -> None:
        self.started_at = time.time()
        self.done = anyio.Event()
        # Set by the waiter once it stopped waiting: the end of the work is then news.
        self.late = False
        self._work = work
        self._on_late_finish = on_late_finish
        # A list, not `T | None`: the work may return None (a stat of a missing file).
        self._result: list[T] = []
        self._error: BaseException | None = None
        self._token = anyio.lowlevel.current_token()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def _run(self) -> None:
        try:
            self._result.append(self._work())
        except BaseException as err:  # handed to the loop as it is
            self._error = err
        try:
            anyio.from_thread.run_sync(self._finished, token=self._token)
        except (anyio.RunFinishedError, RuntimeError):
            pass  # the loop is gone: nobody waits any more

    def _finished(self) -> None:
        self.done.set()
        if self.late and self._on_late_finish is not None:
            self._on_late_finish(self)

    def outcome(self) -> T:
        """The work's result, or its exception raised here (only once `done` is set)."""
        if self._error is not None:
            raise self._error
        return self._result[0]


async def run_abandonable(work: Callable[[], T]) -> T:
    """`work()` on a daemon thread; cancelling the wait leaves the thread behind, never joined.

    For calls on the library that can block with no bound (stat or realpath on a network
    volume that stopped answering): the event loop stays free, and the process can exit.
    """
    job = ReadJob(work, name="musicd-library-call")
    await job.done.wait()
    return job.outcome()
