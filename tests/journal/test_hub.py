from __future__ import annotations

import dataclasses

import anyio

from daemon.events import ObserverEvent, TrackAdded, TrackRemoved
from daemon.journal.hub import EventHub, Subscription
from daemon.models import Track


def close(hub: EventHub, *subs: Subscription) -> None:
    """Close the hub and the subscribers' ends (memory streams warn when left open)."""
    hub.close()
    for sub in subs:
        sub.receive.close()


def batch(n: int, start: int = 0) -> list[TrackAdded]:
    return [TrackAdded(Track(f"{i:016X}"), seq=i + 1) for i in range(start, start + n)]


async def test_a_scan_bigger_than_the_queue_reaches_a_subscriber_that_keeps_up() -> None:
    hub = EventHub(max_queue=10)
    sub = hub.subscribe()
    hub.deliver(batch(25))
    received = [sub.receive.receive_nowait().seq for _ in range(25)]
    assert received == list(range(1, 26))
    assert not sub.overflowed
    assert hub.subscriber_count == 1
    close(hub, sub)


async def test_a_subscriber_that_stopped_reading_is_cut_off_without_touching_the_others() -> None:
    hub = EventHub(max_queue=10)
    slow = hub.subscribe(label="slow")
    fast = hub.subscribe(label="fast")
    for n in range(3):
        hub.deliver(batch(6, start=n * 6))
        while True:
            try:
                fast.receive.receive_nowait()
            except anyio.WouldBlock:
                break
    assert slow.overflowed
    assert not fast.overflowed
    assert hub.subscriber_count == 1
    close(hub, slow, fast)


async def test_filtered_subscriber_gets_only_its_types() -> None:
    hub = EventHub(max_queue=10)
    sub = hub.subscribe(types=["track_removed"])
    hub.deliver(batch(3))
    assert sub.receive.statistics().current_buffer_used == 0
    assert hub.emitted == {"track_added": 3}
    close(hub, sub)


async def test_each_subscriber_receives_events_in_delivery_order() -> None:
    hub = EventHub(max_queue=100)
    everything = hub.subscribe()
    removals = hub.subscribe(types=["track_removed"])
    first = batch(3)
    removed = [TrackRemoved(e.track, seq=e.seq + 10) for e in batch(3)]
    hub.deliver([*first, removed[0]])
    hub.deliver([removed[1], *batch(2, start=3), removed[2]])
    expected = [*first, removed[0], removed[1], *batch(2, start=3), removed[2]]
    assert [everything.receive.receive_nowait().seq for _ in expected] == [e.seq for e in expected]
    assert [removals.receive.receive_nowait().seq for _ in removed] == [e.seq for e in removed]
    close(hub, everything, removals)


async def test_a_subscriber_leaves_out_the_track_events_of_the_origins_it_excludes() -> None:
    hub = EventHub(max_queue=10)
    sub = hub.subscribe(exclude_origins=["genre-updater"])
    mine, other, nobodys = (
        dataclasses.replace(e, origin=o)
        for e, o in zip(batch(3), ("genre-updater", "year-updater", None), strict=True)
    )
    hub.deliver([mine, other, nobodys, ObserverEvent("scan_finished", seq=4)])
    received = [sub.receive.receive_nowait().seq for _ in range(3)]
    assert received == [2, 3, 4]
    assert sub.receive.statistics().current_buffer_used == 0
    close(hub, sub)
