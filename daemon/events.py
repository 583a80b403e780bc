"""Track events produced by the differ, and the observer events around scans and flushes.

Every event gets its sequence number (`seq`) from the change journal, in the transaction that
records it (daemon/stores/journal.py): strictly increasing and never handed out twice for the
life of the database, across restarts and crashes (tests/e2e/test_state_e2e.py and the
reliability suite's seq_across_restarts check it).

A track event's `origin` names the program whose announced write it is, or is None: a person,
or a program that announced nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from daemon.models import ALBUM_KEY_FIELDS, Track

TRACK_ADDED: Final = "track_added"
TRACK_MODIFIED: Final = "track_modified"
TRACK_REMOVED: Final = "track_removed"
SCAN_STARTED: Final = "scan_started"
SCAN_FINISHED: Final = "scan_finished"
FLUSH_FINISHED: Final = "flush_finished"
ERROR: Final = "error"

EventType = Literal[
    "track_added",
    "track_modified",
    "track_removed",
    "scan_started",
    "scan_finished",
    "flush_finished",
    "error",
]
# Spelled once, in EventType (the params models check `types` against it); the CLI offers these.
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)


@dataclass(frozen=True, slots=True)
class TrackAdded:
    track: Track
    seq: int = 0
    origin: str | None = None
    type: Literal["track_added"] = TRACK_ADDED

    @property
    def persistent_id(self) -> str:
        return self.track.persistent_id

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "track": self.track.to_dict(),
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class TrackModified:
    old: Track
    new: Track
    changed: tuple[str, ...]
    seq: int = 0
    origin: str | None = None
    type: Literal["track_modified"] = TRACK_MODIFIED

    @property
    def persistent_id(self) -> str:
        return self.new.persistent_id

    @property
    def moves_album(self) -> bool:
        """Whether the change moves the track to another cache key (artist/album changed)."""
        return not ALBUM_KEY_FIELDS.isdisjoint(self.changed)

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "persistent_id": self.persistent_id,
            "changed": list(self.changed),
            "old": {name: getattr(self.old, name) for name in self.changed},
            "new": {name: getattr(self.new, name) for name in self.changed},
            "track": self.new.to_dict(),
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class TrackRemoved:
    track: Track  # the last known version: its artist/album say which cache entries to drop
    seq: int = 0
    origin: str | None = None
    type: Literal["track_removed"] = TRACK_REMOVED

    @property
    def persistent_id(self) -> str:
        return self.track.persistent_id

    def to_wire(self) -> dict[str, Any]:
        t = self.track
        return {
            "type": self.type,
            "seq": self.seq,
            "persistent_id": t.persistent_id,
            "name": t.name,
            "artist": t.artist,
            "album_artist": t.album_artist,
            "album": t.album,
            "origin": self.origin,
        }


TrackEvent = TrackAdded | TrackModified | TrackRemoved


@dataclass(frozen=True, slots=True)
class ObserverEvent:
    """scan_started / scan_finished / flush_finished / error: for watchers, not for the stores."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    at: float = field(default_factory=time.time)

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "at": self.at, **self.data}


AnyEvent = TrackEvent | ObserverEvent


def invalidation_keys(event: TrackEvent) -> frozenset[tuple[str, str]]:
    """The album cache keys an event makes stale.

    A removed track stales its album; a track whose artist, album artist or album changed
    stales its *old* album (the new one has no answers about this track yet). Additions and
    other edits stale nothing: cached album answers do not depend on them.
    """
    if isinstance(event, TrackRemoved):
        return event.track.album_keys()
    if isinstance(event, TrackModified) and event.moves_album:
        return event.old.album_keys() - event.new.album_keys()
    return frozenset()
