"""Which key each track of a read is kept under: one rule for every reader.

A track is keyed by its Persistent ID, upper-cased (16 hex digits in every file seen). The
XML "Track ID" is never used: iTunes renumbers it between exports. Music.app's script
upper-cases the ids itself, so its rows arrive normalised.

A track without a Persistent ID (iTunes 5 and older, a few modern stubs) gets the fallback
identity `fallback_id()`: "~" followed by the first 15 hex digits of the BLAKE2b hash (8-byte
digest) of its UTF-8 description, which is

- `"location\\0" + Location` when the track has a non-empty "Location", else
- `"tags\\0"` + Name, Artist, Album, Total Time, Track Number and Disc Number joined with NUL
  ("\\0"; XML cannot contain it), an absent value written as the empty string and a number in
  decimal. Music.app's script knows neither Location nor Total Time: both are absent there.

The "~" keeps fallbacks apart from real Persistent IDs. When a fallback is already taken, the
later track gets "-2", "-3", ... appended (in library order) so no track is lost. A repeated
Persistent ID keeps the first track and drops the later ones. Both are counted
(`LibraryRead.without_persistent_id`, `LibraryRead.duplicate_ids`) and reported as warnings
with a stable code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any, Final

from daemon.library import LibraryRead, LibraryWarning, WarningCode
from daemon.models import TRACK_FIELDS, Track

__all__ = [
    "MAX_LISTED_IDS",
    "TrackKeys",
    "duplicate_ids_warning",
    "fallback_id",
    "normalize_persistent_id",
    "row_fallback_id",
    "without_persistent_id_warning",
]

# How many repeated ids a warning names.
MAX_LISTED_IDS: Final = 5

_F = TRACK_FIELDS.index
_NAME, _ARTIST, _ALBUM = _F("name"), _F("artist"), _F("album")
_TRACK_NUMBER, _DISC_NUMBER = _F("track_number"), _F("disc_number")
del _F


def normalize_persistent_id(persistent_id: str) -> str:
    """The key of a track that has a Persistent ID."""
    return persistent_id.upper()


def fallback_id(
    *,
    location: str | None,
    name: str | None,
    artist: str | None,
    album: str | None,
    total_time: int | None,
    track_number: int | None,
    disc_number: int | None,
) -> str:
    """The identity of a track that has no Persistent ID (see the module docstring)."""
    if location:
        description = "location\0" + location
    else:
        parts = (name, artist, album, total_time, track_number, disc_number)
        description = "tags\0" + "\0".join("" if p is None else str(p) for p in parts)
    digest = hashlib.blake2b(description.encode("utf-8"), digest_size=8).hexdigest()
    return "~" + digest[:15]


def row_fallback_id(
    row: Sequence[Any], *, location: str | None = None, total_time: int | None = None
) -> str:
    """`fallback_id()` of a track given as values in TRACK_FIELDS order."""
    return fallback_id(
        location=location,
        name=row[_NAME],
        artist=row[_ARTIST],
        album=row[_ALBUM],
        total_time=total_time,
        track_number=row[_TRACK_NUMBER],
        disc_number=row[_DISC_NUMBER],
    )


def without_persistent_id_warning(count: int) -> LibraryWarning:
    return LibraryWarning(
        WarningCode.WITHOUT_PERSISTENT_ID,
        f"{count} track(s) have no Persistent ID and were given fallback ids",
        count=count,
    )


def duplicate_ids_warning(repeated: Sequence[str]) -> LibraryWarning:
    """`repeated`: each dropped track's id, in library order."""
    listed = tuple(dict.fromkeys(repeated[:MAX_LISTED_IDS]))
    return LibraryWarning(
        WarningCode.DUPLICATE_IDS,
        f"{len(repeated)} track(s) repeat an earlier Persistent ID and were dropped "
        f"(the first one is kept): {', '.join(listed)}",
        count=len(repeated),
        ids=listed,
    )


class TrackKeys:
    """The tracks of one read, keyed in library order by the rules of the module docstring.

    For each track, `claim()` its key, then store the track in `tracks` under that key (or
    hand it on: a streamed read keeps only the keys, in `taken`).
    """

    __slots__ = ("repeated", "taken", "tracks", "without_persistent_id")

    def __init__(self) -> None:
        self.tracks: dict[str, Track] = {}
        # Every key claimed so far.
        self.taken: set[str] = set()
        self.without_persistent_id = 0
        # The ids of the dropped repeats, in library order.
        self.repeated: list[str] = []

    def claim(self, persistent_id: str, *, fallback: bool) -> str | None:
        """The key for the next track, or None when it repeats an id and is dropped.

        `persistent_id` is the normalised Persistent ID, or with `fallback` the track's
        `fallback_id()`, which gets a "-2", "-3", ... suffix when it is taken.
        """
        taken = self.taken
        if fallback:
            self.without_persistent_id += 1
            key, n = persistent_id, 1
            while key in taken:
                n += 1
                key = f"{persistent_id}-{n}"
            taken.add(key)
            return key
        if persistent_id in taken:
            self.repeated.append(persistent_id)
            return None
        taken.add(persistent_id)
        return persistent_id

    def warnings(self) -> list[LibraryWarning]:
        found = []
        if self.without_persistent_id:
            found.append(without_persistent_id_warning(self.without_persistent_id))
        if self.repeated:
            found.append(duplicate_ids_warning(self.repeated))
        return found

    def read(self, source: str, *, warnings: Iterable[LibraryWarning] = ()) -> LibraryRead:
        """The read of these tracks: counts and warnings after the reader's own `warnings`."""
        return LibraryRead(
            tracks=self.tracks,
            stat=None,
            source=source,
            without_persistent_id=self.without_persistent_id,
            duplicate_ids=len(self.repeated),
            warnings=[*warnings, *self.warnings()],
        )
