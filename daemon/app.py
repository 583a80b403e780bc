"""run(config): the daemon built once (`build`), then run as a server's lifecycle (`serve`).

`build` makes every object of the daemon in dependency order and hands each what it needs;
nothing is filled in afterwards. `serve` reads as start-up (the writer runs, the journal's
consumers catch up), the main loop (the sources: watcher, control server and scanner, in the
inner task group; the writer, the consumers and the housekeeping in the spine around it) and
shutdown (stop the sources, let the consumers reach the journal's end, stop the rest); `run`
adds the final checkpoint in a `finally`, so even a crashed task leaves everything
acknowledged on disk.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskStatus

from daemon import __version__
from daemon.config import Config
from daemon.control.server import ControlServer, Limits
from daemon.errors import AlreadyRunning
from daemon.journal import invalidator, merger
from daemon.journal.consumers import Consumer, JournalConsumers
from daemon.journal.hub import EventHub
from daemon.journal.recorder import Recorder
from daemon.journal.signal import Signal
from daemon.journal.triggers import Triggers
from daemon.library import KnownTracks, LibraryReader, SnapshotBuild
from daemon.library.fast_xml import FastXmlReader
from daemon.logs import stop_logging
from daemon.paths import library_is_dir
from daemon.process import apply_process_policy, release_free_memory
from daemon.service.cache_api import CacheApi
from daemon.service.core import Service
from daemon.service.housekeeping import Housekeeping
from daemon.service.programs import BulkReads, ProgramApi
from daemon.service.sources import Sources
from daemon.stores import journal
from daemon.stores._atomic import ensure_private_dir
from daemon.stores.database import Database, checkpoint, open_state
from daemon.stores.writer import Writer
from daemon.watch.debounce import Debouncer
from daemon.watch.library_scan import LibraryScan
from daemon.watch.progress import ScanProgress
from daemon.watch.read_job import run_abandonable
from daemon.watch.removal_guard import RemovalGuard
from daemon.watch.watcher import LibraryWatcher

if TYPE_CHECKING:
    # The CLI builds it (musicd run); the daemon only reads it.
    from daemon.cli.hints import Invocation

log = structlog.get_logger(__name__)

# Consumers get this long to reach the journal's end after the sources stop; then the final
# checkpoint. Both fit well inside the 5 s a supervisor is promised (launchd's ExitTimeOut is
# set longer still).
DRAIN_SECONDS = 2.5
# The WAL stays small (SQLite folds it in every ~1000 pages), so this is ample; a checkpoint
# that is still running then is abandoned: what it was folding in is already committed.
FINAL_CHECKPOINT_SECONDS = 2.0


@contextmanager
def instance_lock(state_dir: Path, invocation: Invocation) -> Iterator[None]:
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
                f"stop it with '{invocation.command('stop')}' or use another state.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def make_reader(
    config: Config,
    snapshot: KnownTracks,
    build: SnapshotBuild | None = None,
    *,
    rescan_command: str,
) -> LibraryReader:
    """The library reader chosen by `library.source`; the XML reader compares a full read with
    `snapshot` as it parses, and streams it into `build` while the snapshot is built, never
    holding the whole library. `rescan_command` ends the message of a read that macOS
    refused."""
    if config.library.source == "music-app":
        from daemon.library.music_app import MusicAppReader

        # Not given the build: its one read asks Music.app for every track at once (one
        # Apple Event per property), so it holds them all whatever happens next; the scanner
        # writes them in batches all the same (`FirstBuild.add_read`).
        return MusicAppReader(
            config.library.path,
            timeout_seconds=config.library.osascript_timeout_seconds,
            full_scan_interval_seconds=config.library.full_scan_interval_seconds,
            rescan_command=rescan_command,
        )
    # Re-parses only the tracks whose bytes changed; a full read first and every
    # full_scan_interval_seconds (see daemon/library/fast_xml.py).
    return FastXmlReader(
        config.library.path,
        full_interval_seconds=config.library.full_scan_interval_seconds,
        snapshot=snapshot,
        build=build,
    )


def _open_state(config: Config, invocation: Invocation) -> Database:
    """Open the database (as every command does: see `open_state`)."""
    from daemon.control.endpoint import prepare_socket_path

    # A second daemon on the same socket (with another state dir) must stop here, with a
    # plain message, before anything is opened.
    path = config.control.socket
    prepare_socket_path(path, invocation.command("stop", "--socket", str(path), socket=False))
    return open_state(
        config.state.dir,
        failed_ttl_seconds=config.cache.failed_ttl_seconds,
        durable_commits=config.state.sync_every_commit,
    )


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


@dataclass(frozen=True)
class Daemon:
    """The daemon's objects, each made once by `build`."""

    db: Database
    writer: Writer
    hub: EventHub
    consumers: JournalConsumers
    triggers: Triggers
    housekeeping: Housekeeping
    watcher: LibraryWatcher
    scan: LibraryScan
    service: Service
    server: ControlServer


def build(
    config: Config,
    db: Database,
    invocation: Invocation,
    *,
    limits: Limits | None = None,
    progress: ScanProgress | None = None,
) -> Daemon:
    """Make the daemon's objects on an open database, in dependency order, each handed what it
    needs; nothing is assigned to any of them afterwards. Call it on the event loop.

    `invocation` is how `musicd run` was started: the commands the daemon suggests use it.
    `progress`: where the scanner tells how far a scan has got, for `status` and for whoever
    made it (`musicd run`'s progress line); by default the daemon's own."""
    hub = EventHub(config.control.max_subscriber_queue)
    # Set by every commit; the periodic checkpoint waits on it.
    dirty = Signal()
    writer = Writer(db, on_commit=dirty.set)
    # Set by every commit that recorded track events; the journal's consumers wait on it.
    signal_ = Signal()
    recorder = Recorder(writer, hub, signal_, journal.head(db.read_conn))
    # The journal's consumers: adding one is one entry here.
    consumers = JournalConsumers(
        writer,
        signal_,
        [
            Consumer(merger.CONSUMER, merger.merge, merger.report),
            Consumer(invalidator.CONSUMER, invalidator.invalidate, invalidator.report),
        ],
    )
    # The configured commands, each a consumer with its own cursor that moves only when its
    # command succeeds (journal/triggers.py).
    triggers = Triggers(
        config.triggers, config.triggers_refused, db, writer, signal_, config.control.socket
    )
    # The programs' bulk reads and cache.get_many share one bound on how many run at once.
    reads = BulkReads(db)
    housekeeping = Housekeeping(config, db, writer, recorder, dirty)
    # The watcher (and the scanner itself) notify `changes`; it settles them into bursts.
    changes = Debouncer(
        settle_seconds=config.library.settle_seconds,
        settle_max_seconds=config.library.settle_max_seconds,
    )
    watcher = LibraryWatcher(
        config.library.path, changes, target_is_dir=library_is_dir(config.library.source)
    )
    scan = LibraryScan(
        config,
        db.path,
        recorder,
        changes,
        partial(make_reader, rescan_command=invocation.command("rescan")),
        RemovalGuard(
            ratio=config.library.mass_removal_ratio,
            confirm_seconds=config.library.mass_removal_confirm_seconds,
            accept_command=invocation.command("rescan", "--accept-removals"),
        ),
        progress if progress is not None else ScanProgress(),
        release_free_memory,
    )
    service = Service(
        config=config,
        db=db,
        hub=hub,
        writer=writer,
        recorder=recorder,
        programs=ProgramApi(config, db, writer, reads),
        cache=CacheApi(config, db, writer, reads, Sources(config.cache.sources)),
        housekeeping=housekeeping,
        consumers=consumers,
        triggers=triggers,
        scan=scan,
        watcher=watcher,
        stop_sources=anyio.CancelScope(),
    )
    server = ControlServer(service, limits or Limits())
    return Daemon(
        db, writer, hub, consumers, triggers, housekeeping, watcher, scan, service, server
    )


async def run(
    config: Config,
    invocation: Invocation,
    *,
    progress: ScanProgress | None = None,
    task_status: TaskStatus[Service] = anyio.TASK_STATUS_IGNORED,
) -> int:
    """Run the daemon until shutdown; return the exit status (0 after a clean drain).

    `invocation` is how `musicd run` was started: the commands the daemon suggests use it;
    `progress`: see `build`.
    """
    apply_process_policy()
    state_dir = config.state.dir
    ensure_private_dir(state_dir)  # raises StateError with a message naming the dir
    with instance_lock(state_dir, invocation):
        db = await anyio.to_thread.run_sync(_open_state, config, invocation)
        try:
            return await serve(
                build(config, db, invocation, progress=progress), task_status=task_status
            )
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
        done = checkpoint(db.write_conn, db.path, truncate=True, wait=False)
    except Exception:
        log.exception("final_checkpoint_failed", path=str(db.path))
        return
    log.info("final_checkpoint_finished", **done)


async def serve(
    daemon: Daemon, *, task_status: TaskStatus[Service] = anyio.TASK_STATUS_IGNORED
) -> int:
    """Start-up, main loop, shutdown; returns 0 after a clean drain."""
    started = time.monotonic()
    service, config = daemon.service, daemon.service.config
    async with anyio.create_task_group() as spine:
        try:
            # Start-up: the snapshot and the cache reach the journal's end before anything reads.
            spine.start_soon(daemon.writer.run)
            spine.start_soon(_watch_signals, service)
            await daemon.consumers.catch_up()
            spine.start_soon(daemon.consumers.follow)
            spine.start_soon(daemon.housekeeping.flush_periodically)
            spine.start_soon(daemon.housekeeping.maintain)
            try:
                # Main loop: the sources, until shutdown cancels their scope (at once, if it
                # was asked for already). The socket serves before the scanner loads its
                # baseline, so a cold start answers at once.
                with service.stop_sources:
                    async with anyio.create_task_group() as sources:
                        await sources.start(daemon.watcher.run)
                        await sources.start(daemon.server.serve)
                        sources.start_soon(daemon.scan.run)
                        # With the sources: at shutdown a running command is stopped at once
                        # (nothing is committed for it), not drained like the consumers.
                        sources.start_soon(daemon.triggers.run)
                        log.info(
                            "daemon_started",
                            pid=os.getpid(),
                            version=__version__,
                            library=str(config.library.path),
                            source=config.library.source,
                            state_dir=str(config.state.dir),
                            socket=str(config.control.socket),
                            epoch=daemon.db.epoch,
                            last_seq=service.recorder.last_seq,
                            startup_ms=round((time.monotonic() - started) * 1000, 1),
                        )
                        task_status.started(service)
            finally:
                # Shutdown: the sources are done; the consumers reach the journal's end.
                with anyio.move_on_after(DRAIN_SECONDS, shield=True) as drain:
                    await daemon.consumers.catch_up()
                if drain.cancelled_caught:
                    log.warning("drain_timed_out", seconds=DRAIN_SECONDS)
        finally:
            daemon.writer.close()
            daemon.hub.close()
            spine.cancel_scope.cancel()
    log.info("daemon_stopped", uptime_seconds=round(time.time() - service.started_at, 1))
    return 0
