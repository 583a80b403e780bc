"""`subscribe`: a connection's live event stream, optionally after a replay of the journal
from a cursor (see replay.py for the switch from the journal to live events).

Events go out in the order the hub delivers them; a subscriber that falls behind is told
(`subscription_dropped`) and disconnected, so it cannot hold up the daemon or anyone else.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from daemon.control.api import DaemonApi
from daemon.control.connection import NOTICE_TIMEOUT_SECONDS, Connection, Disconnected
from daemon.control.methods import Context, Reply
from daemon.control.params import SubscribeParams
from daemon.control.protocol import ALREADY_SUBSCRIBED, INVALID_PARAMS, ProtocolError, notification
from daemon.control.replay import replay
from daemon.journal.feed import CursorError, wire_event
from daemon.journal.hub import Subscription


async def subscribe(ctx: Context, params: SubscribeParams) -> Reply:
    """Answers {subscribed, types, last_seq, resync, reason}, then sends event notifications."""
    daemon, conn = ctx.daemon, ctx.conn
    if conn.subscription is not None:
        raise ProtocolError(
            ALREADY_SUBSCRIBED,
            "this connection is already subscribed; open another one for another filter",
        )
    start_seq: int | None = None
    answer: dict[str, Any] = {"resync": False, "reason": None}
    if params.since is not None:
        try:
            start_seq, refused = daemon.programs.start_position(params.since)
        except CursorError as err:
            raise ProtocolError(
                INVALID_PARAMS, f"subscribe: param 'since' is invalid: {err}"
            ) from None
        if refused is not None:
            answer = {"resync": True, "reason": refused["reason"], "cursor": refused["cursor"]}
    # Subscribed before the replay reads anything: see replay.py for why nothing is lost.
    sub = conn.subscribe(params.types, params.exclude_origins or ())
    types = sorted(params.types) if params.types is not None else None

    def start() -> None:
        conn.start_soon(partial(forward_events, daemon, conn, sub, start_seq))

    return Reply(
        {"subscribed": True, "types": types, "last_seq": daemon.last_seq, **answer},
        after=start,
    )


async def forward_events(
    daemon: DaemonApi, conn: Connection, sub: Subscription, since: int | None = None
) -> None:
    """Send the subscription's events in order (after replaying the journal from `since`);
    tell and drop a subscriber that fell behind."""
    delivered = 0
    last_seq: int | None = None
    epoch = daemon.epoch

    async def send_event(wire: dict[str, Any]) -> None:
        await conn.send(notification("event", wire))

    try:
        skip_through = 0
        if since is not None:
            skip_through, refused = await replay(daemon.programs, sub, since, sub.types, send_event)
            if refused is not None:
                await conn.send(
                    notification(
                        "subscription_dropped",
                        {"reason": f"resync: {refused['reason']}", "last_seq": skip_through},
                    ),
                    within=NOTICE_TIMEOUT_SECONDS,
                )
                conn.close("replay_resync")
                return
        async for event in sub.receive:
            if sub.overflowed:
                break
            if event.seq <= skip_through:
                continue  # replayed from the journal already
            await conn.send(notification("event", wire_event(event, epoch)))
            delivered += 1
            last_seq = event.seq
        if sub.overflowed:
            reason = (
                f"queue_full: more than {daemon.hub.max_queue} events were waiting for "
                "this subscriber; reconnect and resync (events after last_seq were missed)"
            )
            conn.log.warning(
                "subscriber_disconnected",
                reason="queue_full",
                delivered=delivered,
                last_seq=last_seq,
            )
            await conn.send(
                notification("subscription_dropped", {"reason": reason, "last_seq": last_seq}),
                within=NOTICE_TIMEOUT_SECONDS,
            )
            conn.close("subscriber_overflow")
        else:
            conn.close("event_stream_closed")
    except Disconnected:
        return
    except Exception:
        conn.log.exception("event_forwarding_failed")
        conn.close("internal_error")
