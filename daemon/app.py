"""run(config): the one place that opens the daemon's task groups.

Lifecycle: sources (watcher, scanner, periodic flusher, control server) live in the inner task
group and stop first; consumers (snapshot merger, cache invalidator, event publisher) live in the
outer group. Cancelling the inner group closes the send ends of the consumers' streams, so they
finish what is queued and return: that is the drain. Then the final flush, then exit.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskStatus

from daemon import __version__
from daemon.config import Config
from daemon.consumers.flusher import DirtySignal, flush_periodically
from daemon.consumers.invalidator import invalidate_cache
from daemon.consumers.merger import merge_snapshot
from daemon.consumers.publisher import publish_events
from daemon.errors import AlreadyRunning, StateError, describe_os_error
from daemon.events import FLUSH_FINISHED, AnyEvent, ObserverEvent, Sequencer
from daemon.hub import EventHub
from daemon.library import FileStat
from daemon.library.fast_xml import FastXmlReader
from daemon.logs import stop_logging
from daemon.models import Track
from daemon.pipeline import BATCH_BUFFER, Batch, Fanout, Progress
from daemon.scanner import Reader, Scanner, ScanOutcome
from daemon.stores._atomic import ensure_private_dir
from daemon.stores.api_cache import ApiCache
from daemon.stores.delta import DeltaState
from daemon.stores.snapshot import SnapshotStore
from daemon.watcher import LibraryWatcher, Wakeup

log = structlog.get_logger(__name__)

# Consumers get this long to drain after the sources stop, then the final flush runs. Both fit
# well inside the 5 s a supervisor is promised (launchd's ExitTimeOut is set longer still).
DRAIN_SECONDS = 2.5
FINAL_FLUSH_SECONDS = 10.0
SETTLE_WAIT_SECONDS = 5.0


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
                "stop it with 'musicd stop' or use another state.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def make_reader(config: Config, known_tracks: Mapping[str, Track] | None = None) -> Reader:
    """The library reader chosen by `library.source`.

    `known_tracks` (the loaded snapshot) lets the XML reader hand back those same Track objects
    for unchanged tracks, so the snapshot, the scanner's baseline and the reader share one copy.
    """
    if config.library.source == "music-app":
        from daemon.library.music_app import make_music_app_reader

        return make_music_app_reader(config)
    # Re-parses only the tracks whose bytes changed; a full read first and every
    # full_scan_interval_seconds (see daemon/library/fast_xml.py).
    reader = FastXmlReader(
        config.library.path,
        full_interval_seconds=config.library.full_scan_interval_seconds,
    )
    if known_tracks:
        reader.adopt(known_tracks)
    return reader


@dataclass
class FlushStatus:
    last_flush_at: float | None = None
    last_flush_duration_ms: float | None = None
    flush_error: str | None = None
    flush_error_at: float | None = None
    flushes: int = 0


@dataclass
class Daemon:
    """The daemon's shared state: stores, hub, scanner and status, used by every task."""

    config: Config
    snapshot: SnapshotStore
    cache: ApiCache
    delta: DeltaState
    hub: EventHub
    sequencer: Sequencer
    progress: Progress = field(default_factory=Progress)
    dirty: DirtySignal = field(default_factory=DirtySignal)
    wakeup: Wakeup = field(default_factory=Wakeup)
    flush_status: FlushStatus = field(default_factory=FlushStatus)
    started_at: float = field(default_factory=time.time)
    scanner: Scanner | None = None
    watcher: LibraryWatcher | None = None
    shutting_down: bool = False
    _stop_sources: anyio.CancelScope | None = None
    _flush_lock: anyio.Lock = field(default_factory=anyio.Lock)

    @classmethod
    def open(cls, config: Config) -> Daemon:
        """Load every store from the state dir (a corrupt file is set aside, never fatal).

        First make sure the control socket can be ours: a second daemon on the same socket (with
        another state dir) must stop here with a plain message, before any task group opens.
        """
        from daemon.control.endpoint import prepare_socket_path

        prepare_socket_path(config.control.socket)
        state_dir = config.state.dir
        snapshot = SnapshotStore(state_dir)
        cache = ApiCache(
            state_dir / "api_cache.json", failed_ttl_seconds=config.cache.failed_ttl_seconds
        )
        delta = DeltaState(state_dir)
        _remove_stale_temp_files(state_dir)
        snapshot.load()
        cache.load()
        delta.load()
        expired = cache.cleanup_expired()
        pending = list(snapshot.meta.pending_invalidations)
        if pending:
            # Invalidations recorded but not yet written to the cache before a stop: replay them.
            # The cache is flushed before the snapshot, so forgetting them here is safe.
            removed = cache.invalidate_keys(pending)
            snapshot.discard_pending_invalidations(pending)
            log.info("cache_invalidations_replayed", albums=len(pending), entries=removed)
        log.info(
            "state_loaded",
            dir=str(state_dir),
            tracks=len(snapshot),
            cache_entries=len(cache),
            expired_dropped=expired,
        )
        return cls(
            config=config,
            snapshot=snapshot,
            cache=cache,
            delta=delta,
            hub=EventHub(max_queue=config.control.max_subscriber_queue),
            sequencer=Sequencer(snapshot.meta.last_seq),
        )

    # -- operations used by the control server and the CLI ----------------------------

    def mark_dirty(self) -> None:
        self.dirty.set()

    def request_shutdown(self, reason: str = "requested") -> None:
        if not self.shutting_down:
            log.info("shutdown_requested", reason=reason)
        self.shutting_down = True
        if self._stop_sources is not None:
            self._stop_sources.cancel()

    async def rescan(self, *, accept_removals: bool = False) -> ScanOutcome:
        if self.scanner is None:
            raise StateError("the daemon is still starting; try again in a moment")
        outcome = await self.scanner.scan("requested", accept_removals=accept_removals)
        return outcome

    async def flush(self, reason: str = "requested", *, final: bool = False) -> bool:
        """Write every dirty store atomically; return False (and keep running) on failure."""
        async with self._flush_lock:
            return await self._flush_locked(reason, final)

    async def _flush_locked(self, reason: str, final: bool) -> bool:
        with anyio.move_on_after(SETTLE_WAIT_SECONDS):
            await self.progress.wait_settled()
        settled = self.progress.settled
        if not settled:
            # Writing the snapshot now could persist a change whose invalidation is not in the
            # cache yet; the snapshot waits for the next flush (a restart replays the diff).
            log.warning("flush_snapshot_deferred", pending_batches=self.progress.pending)
        started = time.monotonic()
        saves: list[Any] = []
        names: list[str] = []
        # Cache first, snapshot last: a crash in between re-runs an invalidation, never skips one.
        for name, store in (
            ("api_cache", self.cache),
            ("delta", self.delta),
            ("snapshot", self.snapshot),
        ):
            if store.dirty and (settled or name != "snapshot"):
                saves.append(store.capture())
                names.append(name)
        if not saves:
            return True
        try:
            await anyio.to_thread.run_sync(_write_all, saves)
        except (OSError, StateError) as err:
            # StateError: the state dir became unusable (e.g. a file now stands in its place).
            # Either way the daemon keeps its state in memory and retries: never a crash.
            path: str | None = None
            if isinstance(err, OSError):
                text, path = describe_os_error(err), err.filename
                self.flush_status.flush_error = f"{text}: {path or self.config.state.dir}"
            else:
                text = self.flush_status.flush_error = str(err)
            self.flush_status.flush_error_at = time.time()
            log.error(
                "flush_failed",
                reason=reason,
                error=text,
                path=path,
                hint="state on disk is unchanged; retrying by itself once this is fixed",
            )
            self.dirty.set()
            return False
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        if self.flush_status.flush_error:
            log.info("flush_recovered", previous_error=self.flush_status.flush_error)
        self.flush_status = FlushStatus(
            last_flush_at=time.time(),
            last_flush_duration_ms=duration_ms,
            flushes=self.flush_status.flushes + 1,
        )
        log.info(
            "flush_finished",
            reason=reason,
            wrote=names,
            duration_ms=duration_ms,
            tracks=len(self.snapshot),
            cache_entries=len(self.cache),
        )
        if not final:
            self.hub.publish(
                [
                    ObserverEvent(
                        FLUSH_FINISHED,
                        {"wrote": names, "duration_ms": duration_ms},
                        seq=self.sequencer.next(),
                    )
                ]
            )
        return True

    def status(self) -> dict[str, Any]:
        scan = self.scanner.status if self.scanner else None
        return {
            "pid": os.getpid(),
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "started_at": self.started_at,
            "library": {
                "path": str(self.config.library.path),
                "source": self.config.library.source,
                "track_count": len(self.snapshot),
                "missing": scan.library_missing if scan else None,
                "reader_error": scan.reader_error if scan else None,
                "reader_error_at": scan.reader_error_at if scan else None,
                "library_error": scan.library_error_dict() if scan else None,
                "read_stalled": scan.read_stalled() if scan else None,
                "without_persistent_id": scan.without_persistent_id if scan else 0,
                "duplicate_ids": scan.duplicate_ids if scan else 0,
                "held_removals": scan.held_removals if scan else 0,
                "held_since": scan.held_since if scan else None,
                "watching": str(self.watcher.watching)
                if self.watcher and self.watcher.watching
                else None,
            },
            "last_scan_at": scan.last_scan_at if scan else None,
            "last_scan_duration_ms": scan.last_scan_duration_ms if scan else None,
            "last_scan_counts": scan.last_counts if scan else {},
            "scans": scan.scans if scan else 0,
            "last_flush_at": self.flush_status.last_flush_at,
            "last_flush_duration_ms": self.flush_status.last_flush_duration_ms,
            "flush_error": self.flush_status.flush_error,
            "flush_error_at": self.flush_status.flush_error_at,
            "dirty": self.snapshot.dirty or self.cache.dirty,
            "pending_batches": self.progress.pending,
            "last_seq": self.sequencer.last,
            "subscribers": self.hub.subscriber_count,
            "state_dir": str(self.config.state.dir),
            "socket": str(self.config.control.socket),
            "shutting_down": self.shutting_down,
        }


def _write_all(saves: list[Any]) -> None:
    for save in saves:
        save.write()


def _remove_stale_temp_files(state_dir: Path) -> None:
    """Temp files of a write that a kill -9 interrupted: never a real state file, just litter."""
    for tmp in state_dir.glob(".*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            continue


def _baseline_stat(snapshot: SnapshotStore) -> FileStat | None:
    meta = snapshot.meta
    if meta.library_mtime_ns is None or meta.library_size is None or meta.library_inode is None:
        return None
    return FileStat(meta.library_mtime_ns, meta.library_size, meta.library_inode)


async def _watch_signals(daemon: Daemon) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                # launchd never sends it; a terminal hang-up should not kill a background agent.
                log.info("signal_ignored", signal=name)
                continue
            if not daemon.shutting_down:
                daemon.request_shutdown(name)
                continue
            # Second signal: leave now. Every state file is written atomically, so what is on
            # disk is the last complete flush, never half a file.
            log.warning("shutdown_forced", signal=name)
            stop_logging()
            os._exit(128 + signum)


async def run(
    config: Config,
    *,
    task_status: TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED,
) -> int:
    """Run the daemon until shutdown; return the exit status (0 after a clean drain)."""
    state_dir = config.state.dir
    ensure_private_dir(state_dir)  # raises StateError with a message naming the dir
    with instance_lock(state_dir):
        daemon = await anyio.to_thread.run_sync(Daemon.open, config)
        return await _serve(daemon, task_status)


async def _serve(daemon: Daemon, task_status: TaskStatus[Daemon]) -> int:
    config = daemon.config
    merger_tx, merger_rx = anyio.create_memory_object_stream[Batch](BATCH_BUFFER)
    inval_tx, inval_rx = anyio.create_memory_object_stream[Batch](BATCH_BUFFER)
    pub_tx, pub_rx = anyio.create_memory_object_stream[list[AnyEvent]](BATCH_BUFFER)
    fanout = Fanout(merger_tx, inval_tx, pub_tx, daemon.progress)
    target_is_dir = config.library.source == "music-app"
    daemon.watcher = LibraryWatcher(config.library.path, daemon.wakeup, target_is_dir=target_is_dir)
    daemon.scanner = Scanner(
        reader=make_reader(config, daemon.snapshot.tracks),
        library_path=config.library.path,
        baseline=dict(daemon.snapshot.tracks),
        baseline_stat=_baseline_stat(daemon.snapshot),
        initial_build=not daemon.snapshot.tracks and daemon.snapshot.meta.last_full_scan is None,
        fanout=fanout,
        sequencer=daemon.sequencer,
        wakeup=daemon.wakeup,
        settle_seconds=config.library.settle_seconds,
        settle_max_seconds=config.library.settle_max_seconds,
        verify_seconds=config.library.verify_seconds,
        full_scan_interval_seconds=config.library.full_scan_interval_seconds,
        last_full_scan=daemon.snapshot.meta.last_full_scan,
        mass_removal_ratio=config.library.mass_removal_ratio,
        mass_removal_confirm_seconds=config.library.mass_removal_confirm_seconds,
        read_timeout_seconds=config.library.read_timeout_seconds,
    )
    started = time.monotonic()
    async with anyio.create_task_group() as outer:
        outer.start_soon(_watch_signals, daemon)
        with anyio.move_on_after(float("inf")) as drain_scope:
            async with anyio.create_task_group() as consumers:
                consumers.start_soon(
                    merge_snapshot,
                    merger_rx,
                    daemon.snapshot,
                    daemon.delta,
                    daemon.progress,
                    daemon.mark_dirty,
                )
                consumers.start_soon(
                    invalidate_cache, inval_rx, daemon.cache, daemon.progress, daemon.mark_dirty
                )
                consumers.start_soon(publish_events, pub_rx, daemon.hub)
                try:
                    async with anyio.create_task_group() as sources:
                        daemon._stop_sources = sources.cancel_scope
                        if daemon.shutting_down:
                            sources.cancel_scope.cancel()
                        await sources.start(daemon.watcher.run)
                        await _start_control(sources, daemon)
                        sources.start_soon(daemon.scanner.run)
                        sources.start_soon(
                            flush_periodically,
                            daemon.dirty,
                            partial(daemon.flush),
                            config.state.flush_interval_seconds,
                        )
                        log.info(
                            "daemon_started",
                            pid=os.getpid(),
                            version=__version__,
                            library=str(config.library.path),
                            source=config.library.source,
                            state_dir=str(config.state.dir),
                            socket=str(config.control.socket),
                            startup_ms=round((time.monotonic() - started) * 1000, 1),
                        )
                        task_status.started(daemon)
                finally:
                    # Sources are done: closing the send ends lets each consumer drain and return.
                    drain_scope.deadline = anyio.current_time() + DRAIN_SECONDS
                    with anyio.CancelScope(shield=True):
                        await fanout.aclose()
        if drain_scope.cancelled_caught:
            log.warning("drain_timed_out", seconds=DRAIN_SECONDS)
        with anyio.move_on_after(FINAL_FLUSH_SECONDS, shield=True):
            await daemon.flush("shutdown", final=True)
        daemon.hub.close()
        outer.cancel_scope.cancel()
    log.info("daemon_stopped", uptime_seconds=round(time.time() - daemon.started_at, 1))
    return 0


async def _start_control(sources: anyio.abc.TaskGroup, daemon: Daemon) -> None:
    """Start the control server; returns once its socket is bound."""
    from daemon.control.server import serve_control

    await sources.start(serve_control, daemon)
