"""run(config): the one place that opens the daemon's task groups.

It reads like a server's lifecycle: startup (open the database, let the journal's consumers catch
up, build the scanner), the main loop (watcher, scanner and control server in the inner task
group; the writer, the consumers and the periodic checkpoint in the outer ones), and shutdown
(stop the sources, let the consumers reach the journal's end, a final checkpoint in a `finally`
so even a crashed task leaves everything acknowledged on disk).
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskStatus

from daemon import __version__, hints
from daemon.config import Config
from daemon.errors import AlreadyRunning
from daemon.journal import invalidator, merger
from daemon.journal.follow import catch_up, follow_journal
from daemon.library import FileStat, KnownTracks
from daemon.library.fast_xml import FastXmlReader
from daemon.logs import stop_logging
from daemon.paths import library_is_dir
from daemon.process import apply_process_policy
from daemon.service.core import Service
from daemon.stores import journal, tracks
from daemon.stores._atomic import ensure_private_dir
from daemon.stores.database import Database, checkpoint, open_state
from daemon.watch.debounce import Wakeup
from daemon.watch.read_job import run_abandonable
from daemon.watch.scanner import Reader, Scanner
from daemon.watch.watcher import LibraryWatcher

log = structlog.get_logger(__name__)

# Consumers get this long to reach the journal's end after the sources stop; then the final
# checkpoint. Both fit well inside the 5 s a supervisor is promised (launchd's ExitTimeOut is
# set longer still).
DRAIN_SECONDS = 2.5
# The WAL stays small (SQLite folds it in every ~1000 pages), so this is ample; a checkpoint
# that is still running then is abandoned: what it was folding in is already committed.
FINAL_CHECKPOINT_SECONDS = 2.0


@contextmanager
def instance_lock(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the state dir for the daemon's lifetime.

    Taken before the socket is bound, because binding a Unix listener silently replaces an
    existing socket: a second daemon must fail here, not steal the first one's socket.
    """
    path = state_dir / "musicd.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunning(
                f"another musicd (pid {other}) is already running with state dir {state_dir}; "
                f"stop it with '{hints.command('stop')}' or use another state.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def make_reader(config: Config, snapshot: KnownTracks) -> Reader:
    """The library reader chosen by `library.source`; the XML reader compares a full read with
    `snapshot` as it parses, never holding the whole library."""
    if config.library.source == "music-app":
        from daemon.library.music_app import make_music_app_reader

        return make_music_app_reader(config)
    # Re-parses only the tracks whose bytes changed; a full read first and every
    # full_scan_interval_seconds (see daemon/library/fast_xml.py).
    return FastXmlReader(
        config.library.path,
        full_interval_seconds=config.library.full_scan_interval_seconds,
        snapshot=snapshot,
    )


def _open_state(config: Config) -> Database:
    """Open the database (as every command does: see `open_state`)."""
    from daemon.control.endpoint import prepare_socket_path

    # A second daemon on the same socket (with another state dir) must stop here, with a
    # plain message, before anything is opened.
    prepare_socket_path(config.control.socket)
    return open_state(
        config.state.dir,
        failed_ttl_seconds=config.cache.failed_ttl_seconds,
        durable_commits=config.state.sync_every_commit,
    )


def _baseline(db: Database) -> tuple[int, FileStat | None, dict[str, object]]:
    """The track count, library stat and metadata the journal's head describes (after
    catch-up)."""
    # Its own connection: this runs in a worker thread while the loop reads through db.reader.
    with db.reading() as conn:
        meta = journal.meta(conn)
        known = tracks.count(conn)
    parts = (meta.get("library_mtime_ns"), meta.get("library_size"), meta.get("library_inode"))
    stat = FileStat(*parts) if all(isinstance(p, int) for p in parts) else None  # type: ignore[arg-type]
    return known, stat, meta


async def _watch_signals(service: Service) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                # launchd never sends it; a terminal hang-up should not kill a background agent.
                log.info("signal_ignored", signal=name)
                continue
            if not service.shutting_down:
                service.request_shutdown(name)
                continue
            # Second signal: leave now. Everything acknowledged is committed already; what is
            # lost is only the final checkpoint (SQLite replays the WAL at the next open).
            log.warning("shutdown_forced", signal=name)
            stop_logging()
            os._exit(128 + signum)


async def run(
    config: Config,
    *,
    task_status: TaskStatus[Service] = anyio.TASK_STATUS_IGNORED,
) -> int:
    """Run the daemon until shutdown; return the exit status (0 after a clean drain)."""
    apply_process_policy()
    state_dir = config.state.dir
    ensure_private_dir(state_dir)  # raises StateError with a message naming the dir
    with instance_lock(state_dir):
        db = await anyio.to_thread.run_sync(_open_state, config)
        try:
            return await _serve(config, db, task_status)
        finally:
            # Whatever happened above, what was committed is made durable against a power cut.
            # On a daemon thread: a checkpoint stuck on a failing disk is left behind and the
            # process still exits (an anyio worker thread would keep it alive).
            with anyio.move_on_after(FINAL_CHECKPOINT_SECONDS, shield=True) as scope:
                await run_abandonable(partial(_final_checkpoint, db))
            if scope.cancelled_caught:
                log.warning("final_checkpoint_abandoned", seconds=FINAL_CHECKPOINT_SECONDS)
            else:
                db.close()


def _final_checkpoint(db: Database) -> None:
    """The last checkpoint, then the connections are closed.

    It never waits for another program's read transaction (which would hold a TRUNCATE back
    for the whole busy timeout, past the shutdown budget): what the reader holds back stays in
    the WAL, synced, and is folded in at the next start. Nothing acknowledged is lost either way
    (tests/e2e/test_lifecycle_e2e.py::test_sigterm_with_an_outside_reader_exits_in_time).
    """
    try:
        done = checkpoint(db.writer, db.path, truncate=True, wait=False)
    except Exception:
        log.exception("final_checkpoint_failed", path=str(db.path))
        return
    log.info("final_checkpoint_finished", **done)


async def _serve(config: Config, db: Database, task_status: TaskStatus[Service]) -> int:
    started = time.monotonic()
    service = Service.create(config, db)
    writer, signal_ = service.writer, service.signal

    async def catch_up_all() -> None:
        await catch_up(writer, merger.CONSUMER, merger.merge, service.note_merged)
        await catch_up(
            writer, invalidator.CONSUMER, invalidator.invalidate, service.note_invalidated
        )

    async with anyio.create_task_group() as outer:
        outer.start_soon(writer.run)
        outer.start_soon(_watch_signals, service)
        try:
            # Startup: the snapshot and the cache reach the journal's end before anything reads.
            await catch_up_all()
            wakeup = Wakeup()
            target_is_dir = library_is_dir(config.library.source)
            service.watcher = LibraryWatcher(
                config.library.path, wakeup, target_is_dir=target_is_dir
            )
            async with anyio.create_task_group() as background:
                background.start_soon(
                    follow_journal,
                    writer,
                    signal_,
                    merger.CONSUMER,
                    merger.merge,
                    service.note_merged,
                )
                background.start_soon(
                    follow_journal,
                    writer,
                    signal_,
                    invalidator.CONSUMER,
                    invalidator.invalidate,
                    service.note_invalidated,
                )
                background.start_soon(service.housekeeping.flush_periodically)
                background.start_soon(service.housekeeping.maintain)
                try:
                    async with anyio.create_task_group() as sources:
                        service.stop_sources = sources.cancel_scope
                        if service.shutting_down:
                            sources.cancel_scope.cancel()
                        await sources.start(service.watcher.run)
                        await sources.start(_serve_control, service)
                        sources.start_soon(_scan, service, wakeup)
                        log.info(
                            "daemon_started",
                            pid=os.getpid(),
                            version=__version__,
                            library=str(config.library.path),
                            source=config.library.source,
                            state_dir=str(config.state.dir),
                            socket=str(config.control.socket),
                            epoch=db.epoch,
                            last_seq=service.recorder.last_seq,
                            startup_ms=round((time.monotonic() - started) * 1000, 1),
                        )
                        task_status.started(service)
                finally:
                    # Sources are done: let both consumers reach the journal's end, then stop.
                    with anyio.move_on_after(DRAIN_SECONDS, shield=True) as drain:
                        await catch_up_all()
                    if drain.cancelled_caught:
                        log.warning("drain_timed_out", seconds=DRAIN_SECONDS)
                    background.cancel_scope.cancel()
        finally:
            writer.close()
            service.hub.close()
            outer.cancel_scope.cancel()
    log.info("daemon_stopped", uptime_seconds=round(time.time() - service.started_at, 1))
    return 0


async def _scan(service: Service, wakeup: Wakeup) -> None:
    """Load the baseline (after the socket already serves), then run the scanner."""
    config = service.config
    known, stat, meta = await anyio.to_thread.run_sync(_baseline, service.db)
    last_full = meta.get("last_full_scan")
    # The scanner's worker threads read the baseline on a connection of their own.
    head = await anyio.to_thread.run_sync(tracks.HeadTracks, service.db.path, merger.CONSUMER)
    service.scanner = Scanner(
        library=config.library,
        reader=make_reader(config, head),
        snapshot=head,
        baseline_count=known,
        baseline_stat=stat,
        initial_build=not known and last_full is None,
        recorder=service.recorder,
        wakeup=wakeup,
    )
    try:
        await service.scanner.run()
    finally:
        head.close()


async def _serve_control(service: Service, *, task_status: TaskStatus[None]) -> None:
    from daemon.control.server import serve_control

    await serve_control(service, task_status=task_status)
