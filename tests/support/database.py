"""The daemon's state database as another program sees it: read-only queries, a seeded API
cache, and the soundness check the next start would make."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import orjson

from daemon.models import TRACK_FIELDS
from daemon.stores.schema import DB_FILE, SCHEMA_VERSION

# The answer sources seeded caches hold one entry each of, per album.
SOURCES = ("musicbrainz", "discogs", "lastfm", "spotify")


def _db_query(state_dir: Path, sql: str) -> list[sqlite3.Row]:
    path = state_dir / DB_FILE
    if not path.exists():
        return []
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def db_tracks(state_dir: Path) -> dict[str, dict[str, Any]]:
    rows = _db_query(state_dir, f"SELECT {', '.join(TRACK_FIELDS)} FROM tracks ORDER BY rowid")
    tracks = {}
    for row in rows:
        track = dict(row)
        track["compilation"] = bool(track["compilation"])
        track["disabled"] = bool(track["disabled"])
        tracks[track["persistent_id"]] = track
    return tracks


def db_meta(state_dir: Path) -> dict[str, Any]:
    return {
        row["key"]: orjson.loads(row["value"]) for row in _db_query(state_dir, "SELECT * FROM meta")
    }


def db_cache_entries(state_dir: Path) -> list[dict[str, Any]]:
    """Every API cache row, with the JSON columns decoded (expired ones included)."""
    rows = _db_query(
        state_dir,
        "SELECT artist, album, source, success, data, metadata, created_at, expires_at "
        "FROM api_cache",
    )
    entries = []
    for row in rows:
        entry = dict(row)
        entry["success"] = bool(entry["success"])
        entry["data"] = orjson.loads(entry["data"]) if entry["data"] is not None else None
        entry["metadata"] = orjson.loads(entry["metadata"])
        entries.append(entry)
    return entries


def db_seed_cache(state_dir: Path, entries: list[dict[str, Any]]) -> None:
    """Put cache entries (dicts like `cache_entries` returns) into a database, creating it."""
    from daemon.stores import cache
    from daemon.stores.database import open_database

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = open_database(state_dir)
    try:
        with db.transaction() as tx:
            cache.put_many(
                tx,
                [
                    cache.CacheEntry(
                        e["artist"],
                        e["album"],
                        cache.normalize_source(e["source"]),
                        bool(e["success"]),
                        e.get("data"),
                        e.get("metadata") or {},
                        float(e["created_at"]),
                        e.get("expires_at"),
                    )
                    for e in entries
                ],
            )
    finally:
        db.close()


def journal_seqs(state_dir: Path) -> list[int]:
    """The seqs of the journal's rows, in rowid order (read-only, daemon running or not)."""
    conn = sqlite3.connect(f"{(state_dir / DB_FILE).as_uri()}?mode=ro", uri=True)
    try:
        return [int(r[0]) for r in conn.execute("SELECT seq FROM journal ORDER BY rowid")]
    finally:
        conn.close()


def database_problems(state_dir: Path) -> list[str]:
    """Check the state database as the next start would find it; return the problems found.

    The files are copied first (the database and its WAL, as a kill left them), so the check
    neither replays nor checkpoints the WAL the daemon itself must recover from.
    """
    problems: list[str] = []
    problems.extend(f"moved aside: {p.name}" for p in sorted(state_dir.glob("*.corrupt-*")))
    problems.extend(f"old state file: {p.name}" for p in sorted(state_dir.glob("*.json")))
    path = state_dir / DB_FILE
    if not path.exists():
        return [*problems, f"{DB_FILE} is missing"]
    with tempfile.TemporaryDirectory(prefix="musicd-check-") as tmp:
        copy = Path(tmp) / DB_FILE
        shutil.copyfile(path, copy)
        wal = path.with_name(DB_FILE + "-wal")
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(wal, copy.with_name(DB_FILE + "-wal"))
        try:
            conn = sqlite3.connect(copy)
            try:
                check = conn.execute("PRAGMA quick_check").fetchall()
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as err:
            return [*problems, f"{DB_FILE} does not open: {err}"]
    if check != [("ok",)]:
        problems.append(f"{DB_FILE} quick_check: {check[:3]}")
    if version != SCHEMA_VERSION:
        problems.append(f"{DB_FILE} user_version {version}")
    return problems
