"""The one re-armable wake-up: the journal's consumers, the periodic checkpoint and the settle
timer all sleep on a `Signal`."""

from __future__ import annotations

import threading

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from daemon.journal.signal import Signal


async def test_a_set_before_the_wait_returns_at_once() -> None:
    signal = Signal()
    seen = signal.count
    signal.set()  # lands while the waiter works, before it waits
    with anyio.fail_after(1):
        await signal.wait_past(seen)
    assert signal.is_set_since(seen)


async def test_without_a_set_the_wait_sleeps() -> None:
    signal = Signal()
    with anyio.move_on_after(0.1) as waited:
        await signal.wait_past(signal.count)
    assert waited.cancelled_caught


async def test_many_sets_wake_once() -> None:
    signal = Signal()
    seen = signal.count
    for _ in range(5):
        signal.set()
    with anyio.fail_after(1):
        await signal.wait_past(seen)
    # The waiter dealt with all five: the next wait sleeps until a new set.
    seen = signal.count
    assert not signal.is_set_since(seen)
    with anyio.move_on_after(0.1) as waited:
        await signal.wait_past(seen)
    assert waited.cancelled_caught


async def test_every_waiter_is_woken_and_none_takes_a_wake_up_from_another() -> None:
    signal = Signal()
    woken: list[str] = []

    async def waiter(name: str, seen: int) -> None:
        await signal.wait_past(seen)
        woken.append(name)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            seen = signal.count
            tg.start_soon(waiter, "merger", seen)
            tg.start_soon(waiter, "invalidator", seen)
            await anyio.wait_all_tasks_blocked()
            signal.set()
        # A third that read the count before the set still sees it, after the others did.
        await waiter("late", seen)
    assert sorted(woken) == ["invalidator", "late", "merger"]


async def test_a_set_from_a_thread_through_the_loop_wakes_the_waiter() -> None:
    signal = Signal()
    token = anyio.lowlevel.current_token()
    seen = signal.count

    def from_thread() -> None:
        anyio.from_thread.run_sync(signal.set, token=token)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(signal.wait_past, seen)
            await anyio.wait_all_tasks_blocked()
            thread = threading.Thread(target=from_thread)
            thread.start()
        await anyio.to_thread.run_sync(thread.join)
    assert signal.count == seen + 1
