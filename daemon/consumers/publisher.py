"""Log every track event and hand it to the socket subscribers."""

from __future__ import annotations

import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from daemon.events import AnyEvent, TrackAdded, TrackModified, TrackRemoved
from daemon.hub import EventHub

log = structlog.get_logger(__name__)


def _log_event(event: AnyEvent) -> None:
    if isinstance(event, TrackModified):
        log.info(
            "track_modified",
            seq=event.seq,
            persistent_id=event.persistent_id,
            # The console line names the track, not just its id.
            track=f"{event.new.artist or '?'} - {event.new.name or '?'}",
            changed=list(event.changed),
            old={k: getattr(event.old, k) for k in event.changed},
            new={k: getattr(event.new, k) for k in event.changed},
        )
    elif isinstance(event, TrackAdded | TrackRemoved):
        t = event.track
        log.info(
            event.type,
            seq=event.seq,
            persistent_id=t.persistent_id,
            name=t.name,
            artist=t.artist,
            album=t.album,
        )


async def publish_events(
    batches: MemoryObjectReceiveStream[list[AnyEvent]], hub: EventHub, *, log_each: int = 1000
) -> None:
    """Consume event lists until the stream closes. Large batches are logged as a summary."""
    async with batches:
        async for events in batches:
            try:
                if len(events) <= log_each:
                    for event in events:
                        _log_event(event)
                hub.publish(events)
            except Exception:
                log.exception("event_publish_failed", events=len(events))
