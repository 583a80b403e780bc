"""Opening `musicd.db`: check it, migrate it, set a damaged one aside, import old state files.

`open_state` is the one way every command opens it (the daemon, `import-cache`, `export`), so
whichever runs first the files are the owner's alone and the old JSON state files are imported.

The returned `Database` holds the write connection (the `Writer` task's) and a read connection
for point lookups on the event loop; WAL readers never block the writer.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.errors import StateError, describe_os_error
from daemon.stores import journal
from daemon.stores._atomic import ensure_private_dir
from daemon.stores.legacy import import_legacy_state
from daemon.stores.schema import (
    DB_FILE,
    DatabaseCorrupt,
    check_and_migrate,
    connect,
    move_aside,
    reading,
    wal_identity,
)
from daemon.stores.transactions import transaction
from daemon.stores.writer import DatabaseUnavailable, describe_db_error

log = structlog.get_logger(__name__)

_CORRUPT_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


def _is_corrupt(err: sqlite3.Error) -> bool:
    name = getattr(err, "sqlite_errorname", "") or ""
    return name.split("_")[0:2] == ["SQLITE", "CORRUPT"] or name in _CORRUPT_CODES


@dataclass
class Database:
    path: Path
    # The one connection that writes (the Writer's, on its worker thread).
    write_conn: sqlite3.Connection
    # The event loop's connection for short reads (the programs' small pages, cache.get).
    read_conn: sqlite3.Connection
    epoch: str
    # Where a damaged database was moved this start (None: it was sound or new).
    moved_aside: Path | None = None
    created: bool = False
    durable_commits: bool = False
    # (st_dev, st_ino) of the -wal SQLite opened: another one at that path means it was
    # deleted or replaced under us (see renew_wal).
    wal_id: tuple[int, int] | None = None

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction on the write connection (`stores.transactions.transaction`).

        For code that holds the database while no `Writer` runs on it (the commands that
        open the file themselves, start-up); the daemon writes through its `Writer`.
        """
        return transaction(self.write_conn)

    def reading(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read connection of its own, closed when the block ends (`schema.reading`)."""
        return reading(self.path)

    def close(self) -> None:
        for conn in (self.read_conn, self.write_conn):
            try:
                conn.close()
            except sqlite3.Error:
                log.warning("database_close_failed", path=str(self.path))

    def renew_wal(self) -> sqlite3.Connection | None:
        """If `musicd.db-wal` is no longer the file SQLite writes to (deleted or replaced under
        the running daemon), fold everything into the main file and start a new WAL at its path.

        SQLite keeps writing commits to the WAL it opened; once that file is unlinked, whatever
        is committed after the last checkpoint exists only in a file nobody can find after a
        crash. Runs on the writer's thread, outside a transaction; the Writer takes
        `write_conn` afresh for each round, so its next round uses the new connection. Returns
        the old read connection for the caller to close on the loop (None: nothing was wrong).
        Raises DatabaseUnavailable while a reader holds the fold back.
        """
        if self.wal_id is None or wal_identity(self.path) == self.wal_id:
            return None
        log.warning("database_wal_replaced", path=str(self.path))
        busy, frames, moved = self.write_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy or frames != moved:
            raise DatabaseUnavailable(
                f"the WAL of {self.path} was deleted or replaced and cannot be folded into the "
                "database yet (another program is reading it); musicd retries by itself"
            )
        # Everything is in the main file now; new connections open (and create) the WAL by path.
        write_conn = connect(self.path, durable_commits=self.durable_commits)
        try:
            read_conn = connect(self.path, durable_commits=self.durable_commits)
        except BaseException:
            write_conn.close()
            raise
        old_write_conn, old_read_conn = self.write_conn, self.read_conn
        self.write_conn, self.read_conn = write_conn, read_conn
        old_write_conn.close()
        self.wal_id = wal_identity(self.path)
        log.info("database_wal_renewed", path=str(self.path))
        return old_read_conn


def _owner_only(path: Path) -> None:
    """Make the database and its -wal and -shm the owner's alone, whoever created them.

    SQLite creates the file 0644 less the umask, and its -wal and -shm copy that mode: the
    cached answers and the library are the user's alone. A file an older version (or another
    tool) made readable to others is narrowed; one that cannot be is reported, not fatal.
    """
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = os.stat(file).st_mode
            if mode & 0o077:
                os.chmod(file, mode & 0o700)
                log.info("database_permissions_narrowed", path=str(file), mode=oct(mode & 0o777))
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("database_permissions_kept", path=str(file), error=describe_os_error(err))


def _open_checked(path: Path, *, durable_commits: bool) -> tuple[sqlite3.Connection, int]:
    conn: sqlite3.Connection | None = None
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as err:
        raise StateError(f"cannot open {path}: {describe_os_error(err)}") from err
    _owner_only(path)
    try:
        conn = connect(path, durable_commits=durable_commits)
        return conn, check_and_migrate(conn, path)
    except sqlite3.DatabaseError as err:
        if conn is not None:
            conn.close()
        if _is_corrupt(err):
            raise DatabaseCorrupt(str(err)) from err
        raise StateError(f"cannot open {path}: {describe_db_error(err)}") from err
    except BaseException:
        if conn is not None:
            conn.close()
        raise


def open_state(
    state_dir: Path,
    *,
    failed_ttl_seconds: float,
    durable_commits: bool = False,
    rebuild_damaged: bool = True,
) -> Database:
    """Open the state database the way every command does, whichever runs first.

    The state dir is made (private), the database's files are the owner's alone, the schema
    is migrated, and a database made now imports the old JSON state files (then moved aside,
    so only once). Raises StateError as `open_database` does.
    """
    ensure_private_dir(state_dir)
    db = open_database(state_dir, durable_commits=durable_commits, rebuild_damaged=rebuild_damaged)
    if db.created:
        try:
            import_legacy_state(db.write_conn, state_dir, failed_ttl_seconds)
        except BaseException:
            db.close()
            raise
    return db


def open_database(
    state_dir: Path, *, durable_commits: bool = False, rebuild_damaged: bool = True
) -> Database:
    """Open (creating, migrating or rebuilding) the state database.

    Raises StateError when the file cannot be opened at all (permissions, a newer schema).
    A file that is not a sound database is moved aside and a new one made: never fatal. A
    command that runs beside the daemon passes `rebuild_damaged=False` (the daemon may have
    the file open): then a damaged file is a StateError that says to start musicd.
    """
    path = state_dir / DB_FILE
    existed = path.exists()
    moved: Path | None = None
    try:
        conn, old_version = _open_checked(path, durable_commits=durable_commits)
    except DatabaseCorrupt as err:
        if not rebuild_damaged:
            raise StateError(
                f"cannot use {path}: {err}; start musicd, which moves a damaged database aside "
                "and rebuilds it"
            ) from None
        moved = move_aside(path, str(err))
        conn, old_version = _open_checked(path, durable_commits=durable_commits)
        salvage_cache(moved, conn)
    read_conn = connect(path, durable_commits=durable_commits)
    epoch = journal.meta(conn)["epoch"]
    log.info(
        "database_opened",
        path=str(path),
        epoch=epoch,
        created=not existed or moved is not None,
        schema_from=old_version,
        last_seq=journal.head(conn),
    )
    return Database(
        path=path,
        write_conn=conn,
        read_conn=read_conn,
        epoch=str(epoch),
        moved_aside=moved,
        created=old_version == 0,
        durable_commits=durable_commits,
        wal_id=wal_identity(path),
    )


_SALVAGE_COLUMNS = (
    "artist_key, album_key, source, artist, album, success, data, metadata, created_at, expires_at"
)


def salvage_cache(damaged: Path, conn: sqlite3.Connection) -> int:
    """Copy whatever cached answers can still be read from a damaged database; returns how many.

    The answers took rate-limited lookups to gather: losing them to one bad page elsewhere in
    the file would be a waste. Rows are copied in order until one cannot be read; those read
    before it are kept. Opens its own transaction on `conn`, which must be outside one.
    """
    copied = 0
    # A file shorter than its header says (truncated) is otherwise refused outright; with
    # this, SQLite reads what is there and fails only on the pages that are missing.
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute("ATTACH DATABASE ? AS damaged", (f"{damaged.resolve().as_uri()}?mode=ro",))
    except sqlite3.Error:
        conn.execute("PRAGMA writable_schema = OFF")
        return 0
    try:
        with transaction(conn):
            rows = conn.execute(f"SELECT {_SALVAGE_COLUMNS} FROM damaged.api_cache")
            while True:
                try:
                    chunk = rows.fetchmany(500)
                except sqlite3.DatabaseError as err:
                    log.warning("database_salvage_stopped", path=str(damaged), error=str(err))
                    break
                if not chunk:
                    break
                copied += conn.executemany(
                    f"INSERT OR IGNORE INTO main.api_cache ({_SALVAGE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    chunk,
                ).rowcount
    except sqlite3.Error as err:
        log.warning("database_salvage_failed", path=str(damaged), error=str(err))
        copied = 0
    finally:
        try:
            conn.execute("DETACH DATABASE damaged")
        except sqlite3.Error:
            log.warning("database_detach_failed", path=str(damaged))
        conn.execute("PRAGMA writable_schema = OFF")
    if copied:
        log.info("database_salvaged", path=str(damaged), cache_entries=copied)
    return copied


def checkpoint(
    conn: sqlite3.Connection, path: Path, *, truncate: bool = False, wait: bool = True
) -> dict[str, int | bool]:
    """Fold the WAL into the database file and sync both: everything committed so far is now
    durable against a power cut. Runs outside any transaction, on the write connection.

    With `wait=False` a TRUNCATE that another program's read transaction holds back does not
    wait for it (the connection's busy timeout is switched off): SQLite then folds in what it
    can, as PASSIVE does, and the WAL is synced all the same. For the last checkpoint before
    the connection is closed, which must fit the shutdown budget.
    """
    mode = "TRUNCATE" if truncate else "PASSIVE"
    started = time.perf_counter()
    if not wait:
        conn.execute("PRAGMA busy_timeout = 0")
    busy, wal_frames, moved = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    # SQLite syncs the WAL only when it can fold some of it in; a program reading the file can
    # hold that back. Syncing the WAL ourselves makes every commit durable either way.
    wal = path.with_name(path.name + "-wal")
    try:
        _sync_file(wal)
    except OSError as err:
        # The state dir replaced by a file, a full or failing disk: a failed checkpoint the
        # caller retries, never an error that stops the daemon.
        raise DatabaseUnavailable(
            f"cannot sync {wal}: {describe_os_error(err)}; check that state.dir is still a "
            "directory you can write (musicd retries by itself)"
        ) from err
    return {
        "busy": bool(busy),
        "wal_frames": int(wal_frames),
        "checkpointed_frames": int(moved),
        "duration_us": int((time.perf_counter() - started) * 1e6),
    }


def _sync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if sys.platform == "darwin":
            # fsync() on macOS leaves the data in the drive's cache; F_FULLFSYNC does not.
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
        else:
            os.fsync(fd)
    finally:
        os.close(fd)
