"""When the hub cuts a subscriber off: only when it stopped reading (or is far behind).

Regression for subscribers that were reading as fast as they could yet were dropped by the
first small batch (a flush_finished, even one they had not asked for) that came while they
were still working through a big scan.
"""

from __future__ import annotations

from daemon.events import FLUSH_FINISHED, ObserverEvent, TrackAdded
from daemon.journal.hub import HARD_LIMIT_FACTOR, EventHub, Subscription
from daemon.models import Track


def batch(n: int, start: int = 0) -> list[TrackAdded]:
    return [TrackAdded(Track(f"{i:016X}"), seq=i + 1) for i in range(start, start + n)]


def take(sub: Subscription, n: int) -> None:
    for _ in range(n):
        sub.receive.receive_nowait()


async def test_an_event_a_subscriber_did_not_ask_for_never_cuts_it_off() -> None:
    hub = EventHub(max_queue=10)
    sub = hub.subscribe(types=["track_added"])
    hub.deliver(batch(25))  # a big scan: it is 25 behind
    hub.deliver([ObserverEvent(FLUSH_FINISHED)])  # not for it
    assert not sub.overflowed and hub.subscriber_count == 1
    hub.close()
    sub.receive.close()


async def test_a_subscriber_still_reading_a_big_batch_is_not_cut_off_by_the_next() -> None:
    hub = EventHub(max_queue=10)
    sub = hub.subscribe()
    hub.deliver(batch(25))
    take(sub, 3)  # slow, but reading
    hub.deliver(batch(2, start=25))
    assert not sub.overflowed
    hub.deliver(batch(2, start=27))  # took nothing since: it stopped reading
    assert sub.overflowed and hub.subscriber_count == 0
    sub.receive.close()


async def test_a_slow_reader_is_cut_off_once_far_behind() -> None:
    hub = EventHub(max_queue=10)
    sub = hub.subscribe()
    n = 0
    while not sub.overflowed:
        hub.deliver(batch(20, start=n))
        n += 20
        take(sub, 1)
        assert n < 100 * HARD_LIMIT_FACTOR
    assert sub.receive.statistics().current_buffer_used < 10 * HARD_LIMIT_FACTOR + 20
    sub.receive.close()


async def test_closed_receivers_are_forgotten() -> None:
    hub = EventHub(max_queue=10)
    sub = hub.subscribe()
    sub.receive.close()
    hub.deliver(batch(1))
    assert hub.subscriber_count == 0
