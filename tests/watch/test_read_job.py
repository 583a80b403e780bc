"""Work on a daemon thread, handed back to the loop: a read the scanner may leave behind, and
`run_abandonable` for a call awaited in place (the same job underneath)."""

from __future__ import annotations

import threading

import anyio
import pytest

from daemon.watch.read_job import ReadJob, run_abandonable


async def test_run_abandonable_returns_what_the_work_returned_even_none() -> None:
    with anyio.fail_after(5):
        assert await run_abandonable(lambda: 42) == 42
        assert await run_abandonable(lambda: None) is None


async def test_run_abandonable_raises_what_the_work_raised() -> None:
    def fail() -> None:
        raise OSError(5, "Input/output error")

    with anyio.fail_after(5), pytest.raises(OSError, match="Input/output error"):
        await run_abandonable(fail)


async def test_a_job_that_ends_late_calls_back_on_the_loop() -> None:
    gate = threading.Event()
    called_on: list[int] = []

    def work() -> int:
        gate.wait()
        return 7

    job = ReadJob(work, on_late_finish=lambda j: called_on.append(threading.get_ident()))
    with anyio.move_on_after(0.1):
        await job.done.wait()
    assert job.running
    job.late = True  # its waiter gave up
    gate.set()
    with anyio.fail_after(5):
        await job.done.wait()
    assert called_on == [threading.get_ident()]
    assert job.outcome() == 7
