"""The database file: schema, forward-only migrations, connections, and the start-up check.

`state.dir/musicd.db` is an SQLite database in WAL mode. The schema is versioned with
`PRAGMA user_version`; each migration is a small function that brings version N-1 to N, run in
one transaction. The README documents the tables for programs that open the file read-only.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import structlog

from daemon.errors import StateError
from daemon.stores.transactions import transaction

log = structlog.get_logger(__name__)

DB_FILE: Final = "musicd.db"
# How long a statement waits for a lock another program holds before it fails with "locked".
BUSY_TIMEOUT_SECONDS: Final = 5.0

_V1: Final = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL              -- JSON
) WITHOUT ROWID;

-- The library snapshot: one row per track. rowid order is snapshot order: the library's order
-- at the first build, then each track added since at the end (not where the library puts it).
CREATE TABLE tracks (
    persistent_id TEXT NOT NULL UNIQUE,
    name TEXT, artist TEXT, album_artist TEXT, album TEXT, genre TEXT, year INTEGER,
    compilation INTEGER NOT NULL, disc_number INTEGER, track_number INTEGER,
    date_added TEXT, date_modified TEXT, kind TEXT, track_type TEXT, disabled INTEGER NOT NULL,
    -- normalised names (NFKC, case-folded, white space collapsed), as the API cache keys them
    artist_key TEXT, album_artist_key TEXT, album_key TEXT
);
CREATE INDEX tracks_by_album_artist ON tracks (album_key, artist_key);
CREATE INDEX tracks_by_album_album_artist ON tracks (album_key, album_artist_key);

CREATE TABLE api_cache (
    artist_key TEXT NOT NULL,
    album_key TEXT NOT NULL,
    source TEXT NOT NULL,
    artist TEXT NOT NULL,            -- as it was stored
    album TEXT NOT NULL,
    success INTEGER NOT NULL,
    data TEXT,                       -- JSON
    metadata TEXT NOT NULL,          -- JSON object
    created_at REAL NOT NULL,
    expires_at REAL,                 -- NULL: kept until invalidated
    PRIMARY KEY (artist_key, album_key, source)
) WITHOUT ROWID;
CREATE INDEX api_cache_by_expiry ON api_cache (expires_at) WHERE expires_at IS NOT NULL;

-- AUTOINCREMENT: a seq is never handed out again, even after the rows are trimmed.
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    persistent_id TEXT,
    at REAL NOT NULL,
    body TEXT NOT NULL               -- the event as sent to subscribers, less seq and cursor
);
CREATE INDEX journal_by_at ON journal (at);

CREATE TABLE cursors (
    consumer TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,            -- the last journal seq the consumer has applied
    updated_at REAL NOT NULL
) WITHOUT ROWID;
"""


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', json_quote(?)), ('created_at', ?)",
        (uuid.uuid4().hex, repr(time.time())),
    )


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """The numbers Music.app addresses a track by (models.Track): NULL until the next read
    fills them in (the first scan after the upgrade reports every track as modified)."""
    for column in ("track_id", "music_id", "database_id"):
        conn.execute(f"ALTER TABLE tracks ADD COLUMN {column} INTEGER")
        conn.execute(f"CREATE INDEX tracks_by_{column} ON tracks ({column})")


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    """Each track event's origin (events.py): a column, so a reader can leave out the events of
    some origins in SQL, and in the body, so every stored event reads as a new one does. The
    events recorded before it had none: null."""
    conn.execute("ALTER TABLE journal ADD COLUMN origin TEXT")
    conn.execute(
        "UPDATE journal SET body = json_set(body, '$.origin', NULL) "
        "WHERE type IN ('track_added', 'track_modified', 'track_removed')"
    )


def _migrate_to_4(conn: sqlite3.Connection) -> None:
    """The writes programs announced (stores/expectations.py), kept across restarts."""
    conn.execute(
        "CREATE TABLE expectations ("
        " persistent_id TEXT NOT NULL,"
        " origin TEXT NOT NULL,"
        " fields TEXT NOT NULL,"  # JSON object: field name to the announced new value
        " expires_at REAL NOT NULL,"
        " created_at REAL NOT NULL,"
        " UNIQUE (persistent_id, origin))"
    )
    conn.execute("CREATE INDEX expectations_by_expiry ON expectations (expires_at)")


# MIGRATIONS[n] brings a database at user_version n to n + 1.
MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (
    _migrate_to_1,
    _migrate_to_2,
    _migrate_to_3,
    _migrate_to_4,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class DatabaseCorrupt(Exception):
    """The file is not a usable musicd database (garbage, truncated, failed its check)."""


def connect(
    path: Path, *, read_only: bool = False, durable_commits: bool = False
) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are opened with `stores.transactions`."""
    if read_only:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_SECONDS,
        )
    else:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_SECONDS
        )
    try:
        if not read_only:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise DatabaseCorrupt(f"cannot switch {path} to WAL mode (got {mode!r})")
        # NORMAL in WAL mode: a commit survives the process dying at any moment (kill -9); a
        # power cut can lose what was committed after the last checkpoint (see Writer.flush).
        # FULL syncs the WAL on every commit as well.
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable_commits else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys = ON")
        if sys.platform == "darwin":
            # fsync() on macOS does not reach the platter; F_FULLFSYNC does.
            conn.execute("PRAGMA fullfsync = ON")
            conn.execute("PRAGMA checkpoint_fullfsync = ON")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def reading(path: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection of its own for a short read, closed when the block ends.

    For a worker thread (the loop's read connection is never shared with one) or a command
    that looks at the file once.
    """
    conn = connect(path, read_only=read_only)
    try:
        yield conn
    finally:
        conn.close()


def check_and_migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Check the file's integrity and bring its schema up to date; returns the old version.

    Each migration is a transaction of its own on `conn`, which must be outside one.

    Raises DatabaseCorrupt for a file that is not a database, fails `quick_check`, or was
    written by a newer musicd (its schema is unknown here).
    """
    try:
        result = conn.execute("PRAGMA quick_check").fetchall()
        if result != [("ok",)]:
            detail = "; ".join(str(row[0]) for row in result[:3])
            raise DatabaseCorrupt(f"integrity check failed: {detail}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as err:
        raise DatabaseCorrupt(str(err)) from err
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path} was written by a newer musicd (schema {version}, this one knows "
            f"{SCHEMA_VERSION}); upgrade musicd or set another state.dir"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with transaction(conn):
            MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")
        log.info("database_migrated", path=str(path), version=target)
    return version


def move_aside(path: Path, reason: str) -> Path:
    """Move a bad database (and its -wal/-shm) to `musicd.db.corrupt-<timestamp>`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    log.error(
        "database_corrupt",
        path=str(path),
        moved_to=str(target),
        reason=reason,
        hint="a new database is built from the library; cached answers are recovered from the "
        "old file where it can still be read",
    )
    return target


def wal_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the database's `-wal` file, None when there is none: another one
    at that path than a connection opened means it was deleted or replaced."""
    try:
        st = os.stat(path.with_name(path.name + "-wal"))
    except OSError:
        return None
    return st.st_dev, st.st_ino
