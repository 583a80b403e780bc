"""The original's snapshot metadata and delta state, in its on-disk form: `update_snapshot`
hands these to the host's snapshot service, which stores them with `to_dict()`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

SNAPSHOT_VERSION: Final = "1.0"
# The original clears the processed ids past this many, or when they are this old.
DELTA_MAX_TRACKED_IDS: Final = 50_000
DELTA_MAX_AGE: Final = timedelta(days=7)


@dataclass
class LibraryCacheMetadata:
    last_full_scan: datetime
    library_mtime: datetime
    track_count: int
    snapshot_hash: str
    version: str = SNAPSHOT_VERSION
    last_force_scan_time: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "last_full_scan": self.last_full_scan.isoformat(),
            "library_mtime": self.library_mtime.isoformat(),
            "track_count": self.track_count,
            "snapshot_hash": self.snapshot_hash,
            "last_force_scan_time": self.last_force_scan_time,
        }


@dataclass
class LibraryDeltaCache:
    last_run: datetime
    processed_track_ids: set[str] = field(default_factory=set)
    field_hashes: dict[str, str] = field(default_factory=dict)
    tracked_since: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "last_run": self.last_run.isoformat(),
            "processed_track_ids": sorted(self.processed_track_ids),
            "field_hashes": dict(self.field_hashes),
            "tracked_since": (self.tracked_since or self.last_run).isoformat(),
        }

    def should_reset(self, *, now: datetime | None = None) -> bool:
        current = now or datetime.now(UTC)
        if len(self.processed_track_ids) >= DELTA_MAX_TRACKED_IDS:
            return True
        return current - (self.tracked_since or self.last_run) > DELTA_MAX_AGE

    def add_processed_ids(self, track_ids: Iterable[str]) -> None:
        now = datetime.now(UTC)
        if self.should_reset(now=now):
            self.processed_track_ids.clear()
            self.tracked_since = now
        self.processed_track_ids.update(track_ids)
        if self.tracked_since is None:
            self.tracked_since = now
