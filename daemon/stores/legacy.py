"""Bring older state into the database, losing nothing.

- The JSON state files of earlier musicd versions (`snapshot.json`, `snapshot.meta.json`,
  `delta.json`, `api_cache.json`): imported once, when the database is new, then moved aside
  as `<name>.imported-<timestamp>` (never deleted).
- An API cache file of the application this cache design comes from (`musicd import-cache`):
  `{hash_key: {"artist", "album", "year", "source", "timestamp", "ttl", "metadata",
  "api_response"}}`. An entry with a non-empty `year` is a successful answer, kept until
  invalidated; one without is a failed lookup whose retry TTL runs from its `timestamp`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from daemon.models import APP_ID_FIELDS, TRACK_FIELDS, Track
from daemon.stores import cache, journal, tracks
from daemon.stores.transactions import transaction

log = structlog.get_logger(__name__)

LEGACY_FILES: Final = ("snapshot.json", "snapshot.meta.json", "delta.json", "api_cache.json")


@dataclass
class ImportReport:
    imported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
        }


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as err:
        log.warning("legacy_file_unreadable", path=str(path), error=str(err))
        return None


_BOOL_FIELDS: Final = frozenset({"compilation", "disabled"})
_INT_FIELDS: Final = frozenset({"year", "disc_number", "track_number", *APP_ID_FIELDS})
# Older snapshot files predate the Music.app ids, the last fields of Track: both forms import.
_KNOWN_FIELDS: Final = (
    list(TRACK_FIELDS),
    [name for name in TRACK_FIELDS if name not in APP_ID_FIELDS],
)


def _valid_row(row: Any, fields: list[str]) -> bool:
    if type(row) is not list or len(row) != len(fields) or not row[0]:
        return False
    for name, value in zip(fields, row, strict=True):
        if name in _BOOL_FIELDS:
            expected: tuple[type, ...] = (bool,)
        elif name in _INT_FIELDS:
            expected = (int, type(None))
        else:
            expected = (str, type(None))
        if type(value) not in expected:
            return False
    return True


def _legacy_tracks(data: Any) -> list[Track] | None:
    """The rows of an old snapshot.json; a row of the wrong shape is skipped."""
    fields = data.get("fields") if type(data) is dict else None
    if fields not in _KNOWN_FIELDS:
        return None
    rows = data.get("tracks")
    return [Track(*row) for row in rows if _valid_row(row, fields)] if type(rows) is list else None


def _legacy_entries(data: Any, failed_ttl: float, now: float) -> tuple[list[cache.CacheEntry], int]:
    entries: list[cache.CacheEntry] = []
    bad = 0
    raw = data.get("entries") if type(data) is dict else None
    for value in raw or []:
        try:
            source = cache.normalize_source(value["source"])
            created = float(value["created_at"])
            success = value["success"]
            expires = value.get("expires_at")
            if not success and expires is None:
                expires = created + failed_ttl
            entry = cache.CacheEntry(
                str(value["artist"]),
                str(value["album"]),
                source,
                bool(success),
                value.get("data"),
                dict(value.get("metadata") or {}),
                created,
                float(expires) if expires is not None else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            bad += 1
            continue
        if source and not entry.expired(now):
            entries.append(entry)
    return entries, bad


def import_legacy_state(conn: sqlite3.Connection, state_dir: Path, failed_ttl: float) -> bool:
    """Import the old JSON state files into a new database; True if there were any.

    Runs in one transaction of its own on `conn` (outside one); the files are moved aside only
    after it committed.
    """
    present = [state_dir / name for name in LEGACY_FILES if (state_dir / name).exists()]
    if not present:
        return False
    now = time.time()
    snapshot = _legacy_tracks(_read_json(state_dir / "snapshot.json"))
    meta = _read_json(state_dir / "snapshot.meta.json")
    meta = meta if type(meta) is dict else {}
    entries, bad = _legacy_entries(_read_json(state_dir / "api_cache.json"), failed_ttl, now)
    with transaction(conn):
        if snapshot:
            tracks.replace_all(conn, snapshot)
            keys = ("library_path", "library_mtime_ns", "library_size", "library_inode")
            values = {k: meta.get(k) for k in (*keys, "last_scan", "last_full_scan")}
            values["last_force_scan_time"] = meta.get("last_force_scan_time")
            journal.set_meta(conn, {k: v for k, v in values.items() if v is not None})
        cache.put_many(conn, entries)
        last_seq = meta.get("last_seq")
        if type(last_seq) is int and last_seq > journal.head(conn):
            # Subscribers saw seqs up to here from the old files: the journal goes on after them.
            conn.execute(
                "INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('journal', ?)",
                (last_seq,),
            )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    for path in present:
        try:
            os.replace(path, path.with_name(f"{path.name}.imported-{stamp}"))
        except OSError as err:
            log.warning("legacy_file_not_moved", path=str(path), error=str(err))
    log.info(
        "legacy_state_imported",
        tracks=len(snapshot or []),
        cache_entries=len(entries),
        bad_cache_entries=bad,
        files=[p.name for p in present],
    )
    return True


def _original_entry(
    value: Any, failed_ttl: float, now: float
) -> tuple[cache.CacheEntry | None, str | None]:
    if type(value) is not dict:
        return None, "not an object"
    artist, album, source = value.get("artist"), value.get("album"), value.get("source")
    if not (
        isinstance(artist, str) and artist.strip() and isinstance(album, str) and album.strip()
    ):
        return None, "empty or missing artist/album"
    if not (isinstance(source, str) and source.strip()):
        return None, "empty or missing source"
    timestamp = value.get("timestamp")
    if type(timestamp) not in (int, float):
        return None, "missing timestamp"
    year = value.get("year")
    ttl = value.get("ttl")
    if ttl is not None and type(ttl) not in (int, float):
        return None, "ttl is not a number"
    metadata = value.get("metadata") or {}
    if type(metadata) is not dict:
        return None, "metadata is not an object"
    success = year is not None and str(year).strip() != ""
    expires = None if success else float(timestamp) + float(ttl or failed_ttl)  # type: ignore[arg-type]
    data = {"year": str(year) if success else None, "api_response": value.get("api_response")}
    try:
        orjson.dumps(data)
        orjson.dumps(metadata)
    except TypeError:
        return None, "not JSON"
    entry = cache.CacheEntry(
        artist,
        album,
        cache.normalize_source(source),
        success,
        data,
        metadata,
        float(timestamp),  # type: ignore[arg-type]
        expires,
    )
    if entry.expired(now):
        return None, "expired failed lookup"
    return entry, None


def import_original_cache(
    conn: sqlite3.Connection, data: Any, *, failed_ttl: float, now: float | None = None
) -> ImportReport:
    """Import an original-application cache document in the caller's transaction on `conn`;
    never aborts on one bad entry (it is skipped and counted by reason)."""
    report = ImportReport()
    if type(data) is not dict:
        report.skipped["file is not a JSON object of entries"] += 1
        return report
    now = time.time() if now is None else now
    entries: list[cache.CacheEntry] = []
    for value in data.values():
        entry, why = _original_entry(value, failed_ttl, now)
        if entry is None:
            report.skipped[why or "invalid"] += 1
        else:
            entries.append(entry)
    cache.put_many(conn, entries)
    report.imported = len(entries)
    return report
