"""The delta state: when the daemon last applied changes, and which tracks changed since when.

`processed_ids` lists (once each, first-touched first) the persistent ids that events touched
since `tracked_since`. It is bounded: past `max_ids` ids or `max_age_seconds` of age it starts
over, so it never grows without limit. Tools use it as a hint, the snapshot is the truth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import structlog
from pydantic import BaseModel, Field

from daemon.stores._atomic import (
    SaveTracker,
    ensure_private_dir,
    load_json_or_quarantine,
    write_atomic,
)

log = structlog.get_logger(__name__)

DELTA_VERSION: Final = 1
DELTA_FILE: Final = "delta.json"
DEFAULT_MAX_IDS: Final = 50_000
DEFAULT_MAX_AGE_SECONDS: Final = 7 * 86400.0


class DeltaFile(BaseModel):
    """The shape of `delta.json`."""

    version: Literal[1] = DELTA_VERSION
    last_run: float | None = None
    tracked_since: float | None = None
    processed_ids: list[str] = Field(default_factory=list)


class DeltaState:
    """The delta state in memory, and its file in `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        *,
        max_ids: int = DEFAULT_MAX_IDS,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    ) -> None:
        self.path = state_dir / DELTA_FILE
        self.max_ids = max_ids
        self.max_age_seconds = max_age_seconds
        self.last_run: float | None = None
        self.tracked_since: float | None = None
        self._ids: dict[str, None] = {}
        self._saves = SaveTracker()

    def load(self) -> bool:
        """Load the file; True if a valid one was loaded (a bad one is moved aside)."""
        loaded = load_json_or_quarantine(self.path, _parse_delta, what="delta state")
        if loaded is None:
            self.last_run, self.tracked_since, self._ids = None, None, {}
            return False
        self.last_run = loaded.last_run
        self.tracked_since = loaded.tracked_since
        self._ids = dict.fromkeys(loaded.processed_ids)
        return True

    @property
    def processed_ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def dirty(self) -> bool:
        """True while some change is not yet written to disk."""
        return self._saves.dirty

    def record(self, ids: Iterable[str], now: float) -> None:
        """Note that events touched `ids` at `now` (also just a run, when `ids` is empty)."""
        if self.tracked_since is None or now - self.tracked_since > self.max_age_seconds:
            self._reset(now, reason="age")
        self.last_run = now
        batch = dict.fromkeys(ids)
        self._ids.update(batch)
        if len(self._ids) > self.max_ids:
            self._reset(now, reason="size")
            # Start over from this batch, unless it alone is past the bound.
            if len(batch) <= self.max_ids:
                self._ids = batch
        self._saves.changed()

    def _reset(self, now: float, *, reason: str) -> None:
        if self.tracked_since is not None:
            log.info(
                "delta_state_reset",
                reason=reason,
                ids=len(self._ids),
                tracked_since=self.tracked_since,
            )
        self.tracked_since = now
        self._ids = {}

    def capture(self) -> DeltaSave:
        """What to write, taken now (a copy of at most `max_ids` ids)."""
        return DeltaSave(
            path=self.path,
            document={
                "version": DELTA_VERSION,
                "last_run": self.last_run,
                "tracked_since": self.tracked_since,
                "processed_ids": list(self._ids),
            },
            revision=self._saves.revision,
            tracker=self._saves,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaSave:
    """One captured state of the delta; `write()` runs in a worker thread."""

    path: Path
    document: dict[str, Any]
    revision: int
    tracker: SaveTracker

    def write(self) -> bool:
        """Write the file atomically. False if a newer capture was already written."""
        return self.tracker.write_if_newer(self.revision, self._write)

    def _write(self) -> None:
        ensure_private_dir(self.path.parent)
        write_atomic(self.path, orjson.dumps(self.document))


def _parse_delta(data: Any) -> DeltaFile:
    # The model's version has a default for building one in code; a file must say it.
    if type(data) is not dict or data.get("version") != DELTA_VERSION:
        raise ValueError("delta state without a supported version")
    return DeltaFile.model_validate(data)
