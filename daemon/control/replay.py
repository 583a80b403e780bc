"""`subscribe(since=cursor)`: replay the journal after a position, then go on live, with no gap
and no event twice at the switch.

The subscription to the hub is made *before* the replay starts, so every event committed from
then on is waiting in it. The replay reads the journal page by page; before each read it throws
away what the hub has buffered so far: those events were delivered after their commit, so the
read that follows sees them in the journal. After the last page (the journal's head at that
read), what the hub buffered since is forwarded, less the events at or before that head.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import anyio

from daemon.journal.hub import Subscription
from daemon.service.programs import ProgramApi

REPLAY_PAGE: Final = 1000

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _discard_buffered(sub: Subscription) -> None:
    # The hub judges a subscriber by what waits in its stream, so this also keeps a long
    # replay from being cut off for events it is about to read from the journal anyway.
    while True:
        try:
            sub.receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return


async def replay(
    programs: ProgramApi,
    sub: Subscription,
    start: int,
    types: Iterable[str] | None,
    send_event: Send,
) -> tuple[int, dict[str, Any] | None]:
    """Send every event after `start` from the journal; returns (the position reached, None),
    or (position, resync answer) when the journal was trimmed past the replay meanwhile."""
    wanted = list(types) if types is not None else None
    position = start
    while True:
        _discard_buffered(sub)
        page = await programs.read_after(position, REPLAY_PAGE, wanted, sub.exclude_origins)
        if page["resync"]:
            return position, page
        for event in page["events"]:
            await send_event(event)
        position = page["last_seq"]
        if not page["more"]:
            return position, None
