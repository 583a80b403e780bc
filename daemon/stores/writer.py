"""The one writer: every change to the database is a function of the write connection.

Callers `await writer.submit(fn)`; `fn(conn)` runs in a worker thread inside a transaction and
the call returns once that transaction has committed, so an answer sent after it is durable
against the process dying. Whatever was submitted while one transaction committed goes into the
next one together (group commit): many clients writing at once cost one commit per round, not
one each. Each function runs under its own savepoint, so one that raises is undone alone and
the rest of the round still commits. A database-level failure (disk full, locked by another
program, I/O error) fails the whole round: nothing of it is committed and every caller is told.

`after` callbacks run on the event loop right after the commit, in submission order: that is
how events reach subscribers only once recorded, and in seq order.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.to_thread
import structlog

from daemon.errors import StateError
from daemon.stores.transactions import transaction

log = structlog.get_logger(__name__)

T = TypeVar("T")


class DatabaseUnavailable(StateError, code="database_unavailable"):
    """A write could not be committed; the message says why and what to do."""


# Errors of the database itself, as opposed to a bad value or a bug in one function.
_DB_ERRORS = (sqlite3.OperationalError, sqlite3.DatabaseError)
_CALLER_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)

_HINTS = {
    "SQLITE_BUSY": "another program holds a write lock on the database; close it (musicd "
    "retries by itself)",
    "SQLITE_LOCKED": "the database is locked; musicd retries by itself",
    "SQLITE_FULL": "the disk is full; free some space (musicd retries by itself)",
    "SQLITE_READONLY": "the database cannot be written; check the permissions of state.dir "
    "and its files (musicd retries by itself)",
    "SQLITE_IOERR": "an I/O error on the state dir; check the disk (musicd retries by itself)",
    "SQLITE_CANTOPEN": "a database file cannot be opened; check that state.dir is still a "
    "directory you can write (musicd retries by itself)",
    "SQLITE_CORRUPT": "the database file is damaged; restart musicd to move it aside and "
    "rebuild it from the library",
    "SQLITE_NOTADB": "the database file was overwritten; restart musicd to move it aside and "
    "rebuild it from the library",
}


def describe_db_error(err: BaseException) -> str:
    """One line for a person: what failed and what to do."""
    name = getattr(err, "sqlite_errorname", "") or ""
    base = name.split("_")[0:2]
    hint = _HINTS.get(name) or _HINTS.get("_".join(base)) or "see the log for details"
    return f"database error ({name or type(err).__name__}: {err}); {hint}"


def is_database_error(err: BaseException) -> bool:
    return isinstance(err, _DB_ERRORS) and not isinstance(err, _CALLER_ERRORS)


@dataclass(eq=False)
class _Op(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    after: Callable[[T], None] | None
    in_transaction: bool
    # A quiet write does not ask for a checkpoint (the flush's own flush_finished event).
    quiet: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


@dataclass
class WriterStatus:
    commits: int = 0
    # Commits since the last checkpoint: what a power cut could still take back.
    uncheckpointed_commits: int = 0
    error: str | None = None
    error_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """What `status` shows of the writer."""
        return asdict(self)


class WriteTarget(Protocol):
    """Where the write connection is kept (`Database`): it can be replaced between rounds (a
    new WAL, see `Database.renew_wal`), so the writer asks for it each time."""

    @property
    def write_conn(self) -> sqlite3.Connection: ...


class Writer:
    """Uses the write connection alone; `run()` is its task, `submit()` its only door."""

    def __init__(self, target: WriteTarget, *, on_commit: Callable[[], None] | None = None) -> None:
        self._target = target
        self.status = WriterStatus()
        self._queue: list[_Op[Any]] = []
        self._wake = anyio.Event()
        self._closing = False
        self._on_commit = on_commit

    async def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        after: Callable[[T], None] | None = None,
        transaction: bool = True,
        quiet: bool = False,
    ) -> T:
        """Run `fn(conn)` in the next transaction; return its result once committed.

        Raises what `fn` raised (its changes undone), or DatabaseUnavailable when the round
        could not be committed. A caller cancelled while waiting does not undo its work.
        """
        if self._closing:
            raise DatabaseUnavailable("the daemon is shutting down; try again after it restarts")
        op: _Op[T] = _Op(fn, after, in_transaction=transaction, quiet=quiet)
        self._queue.append(op)
        self._wake.set()
        await op.done.wait()
        if op.error is not None:
            raise op.error
        result: T = op.result
        return result

    async def run(self) -> None:
        """Commit rounds until `close()`; then finish what was queued and return."""
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            batch, self._queue = self._queue, []
            committed = await anyio.to_thread.run_sync(self._commit, batch)
            if committed and self._on_commit is not None and not all(op.quiet for op in batch):
                self._on_commit()
            for op in batch:
                if op.error is None and op.after is not None:
                    try:
                        op.after(op.result)
                    except Exception:
                        log.exception("after_commit_failed")
                op.done.set()

    def checkpointed(self, commits: int) -> None:
        """A checkpoint made the first `commits` of the uncheckpointed commits durable."""
        self.status.uncheckpointed_commits = max(0, self.status.uncheckpointed_commits - commits)

    def close(self) -> None:
        """Refuse new work; `run()` returns once the queue is empty."""
        self._closing = True
        self._wake.set()

    # -- worker thread ---------------------------------------------------------------------

    def _commit(self, batch: list[_Op[Any]]) -> bool:
        """Run a round; True if a transaction committed."""
        work = [op for op in batch if op.in_transaction]
        committed = self._transaction(work) if work else False
        for op in batch:
            if op.in_transaction:
                continue
            try:
                op.result = op.fn(self._target.write_conn)
            except Exception as err:
                op.error = self._wrap(err)
        return committed

    def _transaction(self, batch: list[_Op[Any]]) -> bool:
        conn = self._target.write_conn
        changes = conn.total_changes
        try:
            with transaction(conn):
                self._run(conn, batch)
        except Exception as err:
            if len(batch) == 1 and batch[0].error is err:
                return False  # the one write's own error: it is undone, and it is told
            failure = self._wrap(err)
            for op in batch:
                op.error = failure
            return False
        if conn.total_changes == changes:
            return False
        self.status.commits += 1
        if not all(op.quiet for op in batch):
            # A round of quiet writes alone (the checkpoint's own event) does not make the
            # database "dirty" again, or an idle daemon would checkpoint forever.
            self.status.uncheckpointed_commits += 1
        if self.status.error is not None:
            log.info("database_recovered", previous_error=self.status.error)
            self.status.error = self.status.error_at = None
        return True

    @staticmethod
    def _run(conn: sqlite3.Connection, batch: list[_Op[Any]]) -> None:
        """Each write of a round in turn. An error of the database itself ends the round; a
        write's own error undoes that write alone (raised when it is the round's only one)."""
        # A savepoint per write undoes one that fails alone; a round of one write needs none
        # (its failure rolls the whole transaction back), which is most rounds when idle.
        isolate = len(batch) > 1
        for op in batch:
            if isolate:
                conn.execute("SAVEPOINT op")
            try:
                op.result = op.fn(conn)
            except Exception as err:
                if is_database_error(err) or not conn.in_transaction:
                    raise
                op.error = err
                if not isolate:
                    raise
                conn.execute("ROLLBACK TO op")
            if isolate:
                conn.execute("RELEASE op")

    def _wrap(self, err: Exception) -> Exception:
        if not is_database_error(err):
            return err
        message = describe_db_error(err)
        if message != self.status.error:
            log.error("database_write_failed", error=message)
        self.status.error = message
        self.status.error_at = time.time()
        wrapped = DatabaseUnavailable(message)
        wrapped.__cause__ = err
        return wrapped
