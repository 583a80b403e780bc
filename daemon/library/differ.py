"""Compare two track maps and produce the track events between them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from daemon.events import TrackAdded, TrackEvent, TrackModified, TrackRemoved
from daemon.models import Track


def diff_tracks(old: Iterable[Track], new: Mapping[str, Track]) -> list[TrackEvent]:
    """Events that turn `old` (tracks with distinct keys, taken one at a time: a full
    comparison never needs them all at once) into `new`, without sequence numbers.

    Order: removals (in old order), then modifications and additions (in new order), so a
    consumer that applies them one by one ends with `new`'s tracks. Tracks compare equal
    only when every kept field is equal, which is what makes an untouched track cheap.
    """
    events: list[TrackEvent] = []
    seen: set[str] = set()
    modified: dict[str, TrackModified] = {}
    for before in old:
        pid = before.persistent_id
        seen.add(pid)
        track = new.get(pid)
        if track is None:
            events.append(TrackRemoved(before))
        elif before != track:
            modified[pid] = TrackModified(before, track, before.changed_fields(track))
    for pid, track in new.items():
        if pid not in seen:
            events.append(TrackAdded(track))
        elif (change := modified.get(pid)) is not None:
            events.append(change)
    return events


def diff_changes(
    old: Mapping[str, Track], changed: Mapping[str, Track], gone: Iterable[str]
) -> list[TrackEvent]:
    """Events of an incremental read (`LibraryRead.gone` set): what `diff_tracks` gives for the
    whole library, from the changed tracks alone.

    `old` holds the former track of every key of `changed` and `gone` that had one. Order:
    removals, then modifications and additions in `changed`'s order.
    """
    events: list[TrackEvent] = [TrackRemoved(old[pid]) for pid in gone if pid in old]
    for pid, track in changed.items():
        before = old.get(pid)
        if before is None:
            events.append(TrackAdded(track))
        elif before != track:
            events.append(TrackModified(before, track, before.changed_fields(track)))
    return events
