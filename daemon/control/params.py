"""The params of every control method: pydantic models that refuse unknown params and loose
types, so a mistake in a request is answered with what was wrong (see protocol.py for how).

Which method takes which model is spec.py's table.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from daemon.events import EventType
from daemon.journal.feed import RESERVED_PREFIX, is_reserved
from daemon.journal.origins import MOVES_BY_ITSELF
from daemon.models import TRACK_FIELDS, Track


class Params(BaseModel):
    """Base of every method's params: unknown params and loose types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _normalise_id(value: str) -> str:
    # Persistent ids are hex, upper case in the snapshot; fallback ids ("~" + hex) lower case.
    value = value.strip()
    return value.lower() if value.startswith("~") else value.upper()


Name = Annotated[str, Field(max_length=4096)]
# What a cache entry is stored under: an empty artist or album would be a key nothing finds.
StoredName = Annotated[str, Field(max_length=4096), AfterValidator(_not_blank)]
Source = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
PersistentId = Annotated[
    str,
    Field(min_length=1, max_length=64),
    AfterValidator(_not_blank),
    AfterValidator(_normalise_id),
]


class NoParams(Params):
    pass


class RescanParams(Params):
    accept_removals: bool = False


# A number Music.app addresses a track by (models.APP_ID_FIELDS, which AppIdField names):
# positive, and it fits SQLite's INTEGER.
AppId = Annotated[int, Field(ge=1, le=2**63 - 1)]
AppIdField = Literal["track_id", "music_id", "database_id"]


_TRACK_IDS: Final = ("persistent_id", "track_id", "music_id", "database_id")


class TrackParams(Params):
    """One track, by its persistent id or by one of the numbers Music.app addresses it by."""

    persistent_id: PersistentId | None = None
    track_id: AppId | None = None
    music_id: AppId | None = None
    database_id: AppId | None = None

    @model_validator(mode="after")
    def _one_id(self) -> TrackParams:
        given = [name for name in _TRACK_IDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of persistent_id, track_id, music_id, database_id"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def lookup(self) -> tuple[str, str | int]:
        """(field, value) of the one id given."""
        given = ((name, getattr(self, name)) for name in _TRACK_IDS)
        return next((name, value) for name, value in given if value is not None)


class AlbumParams(Params):
    artist: Name
    album: Name


class CacheKeyParams(AlbumParams):
    source: Source


# An answer may be given its own lifetime (a "no year found" that should be asked again).
TtlSeconds = Annotated[float, Field(gt=0, le=100 * 365 * 86400.0)]


class CachePutParams(CacheKeyParams):
    artist: StoredName
    album: StoredName
    success: bool
    data: Any = None
    metadata: dict[str, Any] | None = None
    ttl_seconds: TtlSeconds | None = None


_ORIGIN = re.compile(r"[a-z0-9._-]{1,64}")


def _origin_name(value: str) -> str:
    if _ORIGIN.fullmatch(value) is None:
        raise ValueError(
            "must be 1-64 characters of a-z, 0-9, '.', '_' and '-' (the program's name, "
            "e.g. genre-updater)"
        )
    return value


OriginName = Annotated[str, AfterValidator(_origin_name)]
# Enough for the programs one consumer would ignore; the filter is built from it per request.
MAX_EXCLUDED_ORIGINS: Final = 32
ExcludedOrigins = Annotated[list[OriginName], Field(min_length=1, max_length=MAX_EXCLUDED_ORIGINS)]


class SubscribeParams(Params):
    # None: every event type. An empty list would subscribe to nothing, which is a mistake.
    types: Annotated[list[EventType], Field(min_length=1)] | None = None
    # Replay the journal after this position first, then go on live (see changes.since).
    since: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # Leave out the track events of these origins (a program's own writes).
    exclude_origins: ExcludedOrigins | None = None


# -- for programs: changes since a position, named cursors, paging, batches -------------------


def _consumer_name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    if is_reserved(value):
        raise ValueError(
            f"names starting with {RESERVED_PREFIX!r} are reserved for the daemon's own"
        )
    return value


def _track_fields(value: list[str]) -> list[str]:
    unknown = [name for name in value if name not in TRACK_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (known: {', '.join(TRACK_FIELDS)})")
    return value


ConsumerName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_consumer_name)]
Cursor = Annotated[str, Field(min_length=1, max_length=200)]
PageLimit = Annotated[int, Field(ge=1, le=10000)]
MAX_BATCH: Final = 1000


class ChangesSinceParams(Params):
    cursor: Cursor | None = None
    consumer: ConsumerName | None = None
    limit: PageLimit = 1000
    types: Annotated[list[EventType], Field(min_length=1)] | None = None
    exclude_origins: ExcludedOrigins | None = None

    @model_validator(mode="after")
    def _one_position(self) -> ChangesSinceParams:
        if self.cursor is not None and self.consumer is not None:
            raise ValueError("give either cursor or consumer, not both")
        return self


class CursorGetParams(Params):
    consumer: ConsumerName


class CursorCommitParams(Params):
    consumer: ConsumerName
    cursor: Cursor
    force: bool = False


class AlbumsParams(Params):
    albums: Annotated[list[AlbumParams], Field(min_length=1, max_length=MAX_BATCH)]


class TracksListParams(Params):
    after: PersistentId | None = None
    limit: PageLimit = 1000
    fields: Annotated[list[str], Field(min_length=1), AfterValidator(_track_fields)] | None = None
    # Only the tracks whose `by` field is one of `ids` (one page, in persistent id order).
    by: AppIdField | None = None
    ids: Annotated[list[AppId], Field(min_length=1, max_length=MAX_BATCH)] | None = None

    @model_validator(mode="after")
    def _by_with_ids(self) -> TracksListParams:
        if (self.by is None) != (self.ids is None):
            raise ValueError("give by and ids together")
        return self


class CacheGetManyParams(Params):
    keys: Annotated[list[CacheKeyParams], Field(max_length=MAX_BATCH)]


class CachePutManyParams(Params):
    # Each entry is checked on its own (CachePutParams), so the answer can name every bad one.
    entries: Annotated[list[Any], Field(max_length=MAX_BATCH)]


# -- write origins -----------------------------------------------------------------------------


# The fields a program can announce: the snapshot's, less the id and what moves by itself.
EXPECTABLE_FIELDS: Final = tuple(
    name for name in TRACK_FIELDS if name != "persistent_id" and name not in MOVES_BY_ITSELF
)
_FIELD_TYPES: Final = {f.name: str(f.type) for f in dataclasses.fields(Track)}


def _fits(name: str, value: Any) -> bool:
    kind = _FIELD_TYPES[name]
    if value is None:
        return "None" in kind
    if kind.startswith("bool"):
        return isinstance(value, bool)
    if kind.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    return isinstance(value, str) and len(value) <= 4096


def _expected_fields(value: dict[str, Any]) -> dict[str, Any]:
    for name, new in value.items():
        if name in MOVES_BY_ITSELF:
            raise ValueError(
                f"{name!r} changes by itself (Music.app moves it), so it is never matched; "
                "leave it out"
            )
        if name not in EXPECTABLE_FIELDS:
            raise ValueError(f"unknown field {name!r} (known: {', '.join(EXPECTABLE_FIELDS)})")
        if not _fits(name, new):
            raise ValueError(f"field {name!r} takes {_FIELD_TYPES[name]}, not {new!r:.60}")
    return value


class ExpectedWrite(TrackParams):
    """One track (by any id tracks.get takes) and the new values a program is about to write."""

    fields: Annotated[dict[str, Any], Field(min_length=1), AfterValidator(_expected_fields)]


class WritesExpectParams(Params):
    origin: OriginName
    tracks: Annotated[list[ExpectedWrite], Field(min_length=1, max_length=MAX_BATCH)]
    # Long enough for Music.app to rewrite its library file and the daemon to read it.
    ttl_seconds: Annotated[float, Field(gt=0, le=86400.0)] = 600.0


class TriggerParams(Params):
    # A name of the config's [[triggers]]; checked against them by the handler.
    name: str = Field(min_length=1, max_length=64)


class TriggerRunParams(TriggerParams):
    # Run even with no events pending (the command gets none, MUSICD_EVENTS=0).
    force: bool = False
