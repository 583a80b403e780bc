"""`musicd import-cache PATH` and `musicd export snapshot [PATH]`: the database, from outside.

Both open `state.dir/musicd.db` directly (SQLite lets a second process read, and write in turn,
while the daemon runs), so they work whether or not the daemon is running, and they open it
the way the daemon does (`open_state`): whichever runs first makes the same database. Every
error of a path they are given is one line and an exit status (73 before anything is written,
74 after).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from daemon.cli.command import Output, Subcommands, add_config_arg, add_group, add_json_arg
from daemon.errors import (
    EX_CANTCREAT,
    EX_IOERR,
    DaemonError,
    InputError,
    MissingInput,
    StateError,
    describe_os_error,
)

if TYPE_CHECKING:
    from daemon.stores.database import Database


def register(sub: Subcommands) -> None:
    """Add `musicd import-cache` and `musicd export snapshot` to the CLI."""
    imp = sub.add_parser(
        "import-cache",
        help="import an API cache file written by ApiCacheService (its cache.json)",
        description="Import the entries of an original-application API cache file into the "
        "database. An entry with a year is a successful answer, kept until its album changes; "
        "one without is a failed lookup, retried after its TTL. Bad entries are skipped and "
        "counted; the import never stops on one.",
    )
    imp.add_argument("path", metavar="PATH", help="the cache.json file to import")
    add_json_arg(imp, "print the report as JSON")
    add_config_arg(imp)
    imp.set_defaults(handler=cmd_import_cache)

    what = add_group(
        sub,
        "export",
        "write the library snapshot as JSON",
        actions_help="what to write (snapshot)",
        description="Write the snapshot (every track) as one JSON document: "
        '{"version", "fields", "tracks": [[...], ...], "epoch", "seq"}, streamed.',
        dest="what",
        metavar="WHAT",
    )
    snap = what.add_parser(
        "snapshot",
        help="every track of the snapshot, in library order",
        description="Write every track of the snapshot, in library order, with the epoch and "
        "the journal position it reflects (follow changes from there).",
    )
    snap.add_argument(
        "path", metavar="PATH", nargs="?", help="file to write (default: standard output)"
    )
    add_config_arg(snap)
    snap.set_defaults(handler=cmd_export_snapshot)


def _quiet_logs() -> None:
    """The stores log for the daemon's log file; here only warnings matter, on stderr."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _state_db(config_arg: str | None, *, create: bool) -> Database:
    """The state database, opened as the daemon opens it (owner-only files, migrations, the
    old JSON state files imported), except that a damaged one is left for the daemon."""
    from daemon.config import load_config
    from daemon.stores.database import open_state
    from daemon.stores.schema import DB_FILE

    _quiet_logs()
    cfg = load_config(config_arg)
    path = cfg.state.dir / DB_FILE
    if not path.exists() and not create:
        raise StateError(f"no database at {path} yet; start musicd once to build it")
    return open_state(
        cfg.state.dir, failed_ttl_seconds=cfg.cache.failed_ttl_seconds, rebuild_damaged=False
    )


def cmd_import_cache(args: argparse.Namespace) -> Output:
    from daemon.config import load_config
    from daemon.stores.legacy import import_original_cache

    source = Path(args.path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise MissingInput(f"{source} does not exist") from None
    except OSError as err:
        raise MissingInput(f"cannot read {source}: {err.strerror}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InputError(f"{source} is not JSON ({err}); nothing was imported") from None
    if type(data) is not dict:
        raise InputError(
            f"{source} is not an ApiCacheService cache file (expected a JSON object of "
            "entries); nothing was imported"
        )
    failed_ttl = load_config(args.config).cache.failed_ttl_seconds
    db = _state_db(args.config, create=True)
    try:
        with db.transaction() as tx:
            report = import_original_cache(tx, data, failed_ttl=failed_ttl)
    except sqlite3.OperationalError as err:
        raise StateError(f"cannot write {db.path}: {err}; nothing was imported") from None
    finally:
        db.close()
    return Output({"file": str(source), "database": str(db.path), **report.as_dict()}, show_import)


def show_import(result: dict[str, Any]) -> None:
    print(f"imported {result['imported']} entries from {result['file']} into {result['database']}")
    for reason, count in result["skipped_by_reason"].items():
        print(f"  skipped {count}: {reason}")


class OutputNotCreated(DaemonError, code="cannot_create_output", exit_status=EX_CANTCREAT):
    """The file to write cannot be created (a missing directory, a directory in its place)."""


class OutputNotWritten(DaemonError, code="output_io_error", exit_status=EX_IOERR):
    """Writing the output failed part way (a full disk); nothing was left in its place."""


@contextlib.contextmanager
def _written(what: object, *, kept: bool = False) -> Iterator[None]:
    """An OSError while writing becomes OutputNotWritten (74); a reader that left does not."""
    try:
        yield
    except BrokenPipeError:
        raise  # `musicd export snapshot | head`: `main` ends quietly
    except OSError as err:
        tail = "; it was left as it was" if kept else ""
        raise OutputNotWritten(f"cannot write {what}: {describe_os_error(err)}{tail}") from None


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """Standard output, or a file replaced atomically once it is complete.

    Every error of the path is one line and an exit status: OutputNotCreated (73) before
    anything is written, OutputNotWritten (74) after; a file is then left as it was.
    """
    if path is None:
        with _written("to standard output"):
            yield sys.stdout.buffer
            sys.stdout.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise OutputNotCreated(
            f"{target} is a directory; give a file name, e.g. {target / 'snapshot.json'}"
        )
    if target.exists() and not target.is_file():
        # A device or a pipe (/dev/stdout, a FIFO) is written as it is: replacing it with a
        # file would break it for everyone.
        try:
            fh = target.open("wb")
        except OSError as err:
            raise OutputNotCreated(f"cannot open {target}: {describe_os_error(err)}") from None
        with _written(target), fh:
            yield fh
        return
    import tempfile  # only when writing a file: every command imports this module

    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputNotCreated(
            f"cannot create {target}: {describe_os_error(err)}; check that {target.parent} "
            "exists and that you can write to it"
        ) from None
    try:
        with _written(target, kept=True):
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def cmd_export_snapshot(args: argparse.Namespace) -> int:
    from daemon.journal.feed import building, snapshot_position
    from daemon.models import TRACK_FIELDS
    from daemon.stores import journal, tracks
    from daemon.stores.transactions import snapshot

    db = _state_db(args.config, create=False)
    # One read snapshot: every row and the position come from the same moment.
    with contextlib.closing(db), snapshot(db.write_conn) as conn:
        epoch = journal.meta(conn).get("epoch")
        head: dict[str, Any] = {"version": 1, "fields": list(TRACK_FIELDS), "epoch": epoch}
        # The position tracks.list gives for the same rows: after an import of old state
        # files the journal goes on from their last seq before the merger ever moved.
        head["seq"] = snapshot_position(conn)
        with _output(args.path) as out:
            out.write(orjson.dumps(head)[:-1] + b',"tracks":[')
            batch: list[list[Any]] = []
            first = True
            # A build under way (or cut short) has filled part of the table: no snapshot yet.
            for track in () if building(conn) else tracks.iterate(conn):
                batch.append(track.to_row())
                if len(batch) == 1000:
                    out.write((b"" if first else b",") + orjson.dumps(batch)[1:-1])
                    first, batch = False, []
            if batch:
                out.write((b"" if first else b",") + orjson.dumps(batch)[1:-1])
            out.write(b"]}\n")
    return 0
