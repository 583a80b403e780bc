"""The debouncer: one burst per settled run of notifications, an empty one when quiet."""

from __future__ import annotations

import math

import anyio

from daemon.watch.debounce import Burst, Debouncer


async def test_notifications_settle_into_one_burst() -> None:
    changes = Debouncer(settle_seconds=0.05, settle_max_seconds=5)
    bursts = changes.settled(quiet_seconds=lambda: math.inf)
    changes.notify("modified")
    changes.notify("created")
    changes.notify("events_lost", force=True)
    with anyio.fail_after(2):
        burst = await anext(bursts)
    assert burst == Burst(reasons=frozenset({"modified", "created", "events_lost"}), forced=True)
    assert burst.reason == "created,events_lost,modified"


async def test_a_burst_that_never_stops_ends_after_settle_max() -> None:
    changes = Debouncer(settle_seconds=0.2, settle_max_seconds=0.5)
    bursts = changes.settled(quiet_seconds=lambda: math.inf)

    async def storm() -> None:
        while True:
            changes.notify("modified")
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tg:
        tg.start_soon(storm)
        started = anyio.current_time()
        with anyio.fail_after(2):
            burst = await anext(bursts)
        # settle_max ended it (the storm never paused for settle_seconds); fail_after bounds it.
        assert anyio.current_time() - started >= 0.5
        assert burst.reasons == {"modified"} and not burst.forced
        tg.cancel_scope.cancel()


async def test_quiet_yields_an_empty_burst_after_quiet_seconds() -> None:
    changes = Debouncer(settle_seconds=0.01, settle_max_seconds=1)
    bursts = changes.settled(quiet_seconds=lambda: 0.05)
    with anyio.fail_after(2):
        assert await anext(bursts) == Burst()
        changes.notify("verify", force=True)
        assert await anext(bursts) == Burst(reasons=frozenset({"verify"}), forced=True)


async def test_nothing_is_yielded_or_run_while_nothing_is_notified() -> None:
    changes = Debouncer(settle_seconds=0.01, settle_max_seconds=1)
    asked: list[float] = []

    def quiet_seconds() -> float:
        asked.append(anyio.current_time())
        return 3600.0

    bursts = changes.settled(quiet_seconds=quiet_seconds)
    with anyio.move_on_after(0.3) as waited:
        await anext(bursts)
    # No burst, and the generator woke for nothing: it asked for its timeout once and slept.
    assert waited.cancelled_caught
    assert len(asked) == 1
