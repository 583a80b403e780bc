"""Tracks, name normalisation and the snapshot/cache record shapes shared by every module."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Final

# The API sources whose answers the cache takes without configuration (`cache.sources` adds more):
# every source GenreUpdater asks (it looks years up in the iTunes Search API too).
DEFAULT_SOURCES: Final[tuple[str, ...]] = ("musicbrainz", "discogs", "lastfm", "spotify", "itunes")

# The numbers Music.app addresses a track by (see Track): a program can look a track up by each.
APP_ID_FIELDS: Final = ("track_id", "music_id", "database_id")

# The fields whose change moves a track to another cache key.
ALBUM_KEY_FIELDS: Final = frozenset({"artist", "album_artist", "album"})


@dataclass(frozen=True, slots=True)
class Track:
    """One library track, reduced to the fields the daemon keeps.

    Its fields, in this order, are TRACK_FIELDS: the wire and snapshot order. Every other key
    of the library file is ignored, so a play-count change is never a modification.

    Dates are kept as the ISO 8601 text the source wrote ("2020-05-16T11:33:56Z"): exact,
    cheap to compare and to store.

    The last three are the numbers Music.app addresses the track by, as each reader finds them
    (None where a reader has no such number): `track_id` is the library XML's "Track ID",
    `music_id` and `database_id` are Music.app's scripting `id` and `database ID`. None of them
    is the track's identity (the persistent id is): the README says which survive what.
    """

    persistent_id: str
    name: str | None = None
    artist: str | None = None
    album_artist: str | None = None
    album: str | None = None
    genre: str | None = None
    year: int | None = None
    compilation: bool = False
    disc_number: int | None = None
    track_number: int | None = None
    date_added: str | None = None
    date_modified: str | None = None
    kind: str | None = None
    track_type: str | None = None
    disabled: bool = False
    track_id: int | None = None
    music_id: int | None = None
    database_id: int | None = None

    def to_row(self) -> list[Any]:
        """The track as a list in TRACK_FIELDS order (the compact snapshot form)."""
        return [getattr(self, name) for name in TRACK_FIELDS]

    @classmethod
    def from_row(cls, row: list[Any]) -> Track:
        return cls(*row)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TRACK_FIELDS}

    def changed_fields(self, other: Track) -> tuple[str, ...]:
        """Names of the kept fields whose values differ between self and other."""
        return tuple(name for name in TRACK_FIELDS if getattr(self, name) != getattr(other, name))

    def album_keys(self) -> frozenset[tuple[str, str]]:
        """Every cache key the answers for this track's album may live under.

        Lookup tools key an album by its track artist or by its album artist, so both count;
        a track with no album has no album answers.
        """
        if not self.album:
            return frozenset()
        artists = {a for a in (self.artist, self.album_artist) if a}
        return frozenset(album_key(a, self.album) for a in artists or {""})


# The fields the daemon keeps for each track, in wire/snapshot order.
TRACK_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Track))

_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def normalize_name(value: str) -> str:
    """NFKC, case-fold and collapse white space, so NFD (macOS) and NFC (APIs) names meet.

    NFKC runs again after case folding because folding can produce unnormalised sequences.
    """
    text = unicodedata.normalize("NFKC", value).casefold()
    text = unicodedata.normalize("NFKC", text)
    return _SPACES.sub(" ", text).strip()


def album_key(artist: str, album: str) -> tuple[str, str]:
    """The normalised (artist, album) pair that keys the API cache."""
    return (normalize_name(artist), normalize_name(album))
