"""Compare two track maps and produce the track events between them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from daemon.events import TrackAdded, TrackEvent, TrackModified, TrackRemoved
from daemon.models import Track


def diff_tracks(old: Mapping[str, Track], new: Mapping[str, Track]) -> list[TrackEvent]:
    """Events that turn `old` into `new`, without sequence numbers.

    Order: removals (in old order), then modifications and additions (in new order), so a
    consumer that applies them one by one ends with `new`'s tracks. Tracks compare equal
    only when every kept field is equal, which is what makes an untouched track cheap.
    """
    events: list[TrackEvent] = [TrackRemoved(track) for pid, track in old.items() if pid not in new]
    for pid, track in new.items():
        before = old.get(pid)
        if before is None:
            events.append(TrackAdded(track))
        # Readers hand back the very same object for an unchanged track: skip the comparison.
        elif before is not track and before != track:
            events.append(TrackModified(before, track, before.changed_fields(track)))
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
