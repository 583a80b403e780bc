"""The watchdog → anyio bridge: file events become a coalesced "look again" signal.

watchdog calls our handler on its observer thread. The handler never queues events: it sets a
flag on the event loop through `anyio.from_thread.run_sync(..., token=token)`, so a burst of
thousands of events coalesces into one pending "look again" (a set of reasons), never a queue
(tests/reliability/test_event_storm.py). Stopping the observer joins its thread, which must
not happen on the loop thread (watchdog holds a lock while our handler waits for the loop), so
it runs in a worker thread under a shield.

The library's *parent directory* is watched, because apps save by writing a temp file and
renaming it over the old one. When that directory does not exist yet, the nearest existing
ancestor is watched instead and the watch moves down as directories appear.

Paths are compared canonical: FSEvents watches the `realpath` of a directory and reports
canonical paths (`/private/var/...` for `/var/...`, the real volume behind a symlinked
`~/Music`), and APFS may hand back a name in another Unicode normal form than the config's. So
the watched directory is resolved before it is scheduled, and event paths and targets are both
compared resolved and in NFC. A symlink re-pointed later is followed: the path is resolved
again on every rewatch and checked every `RESOLVE_CHECK_SECONDS`.

Lost events become a forced rescan without relying on log lines: the emitters are subclassed
to queue an `EventsLostEvent` when inotify's queue overflows (Linux) or FSEvents flags
MustScanSubDirs / UserDropped / KernelDropped (macOS; watchdog ignores those flags). A lost
watch (the directory removed, moved, or FSEvents' root changed) is re-established and rescans.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import structlog
from anyio.abc import TaskStatus
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, EventEmitter

from daemon.watch.debounce import Debouncer
from daemon.watch.read_job import run_abandonable

log = structlog.get_logger(__name__)

# How often the configured path is resolved again, to follow a symlink that was re-pointed.
RESOLVE_CHECK_SECONDS = 30.0
# FSEventStreamEventFlags (FSEvents.h): MustScanSubDirs | UserDropped | KernelDropped.
_FSEVENTS_LOST_FLAGS = 0x1 | 0x2 | 0x4
_FSEVENTS_LOST_ATTRS = ("must_scan_subdirs", "is_user_dropped", "is_kernel_dropped")


class EventsLostEvent(FileSystemEvent):
    """Queued by our emitters when the OS says events were dropped: rescan, whatever the path."""

    event_type = "events_lost"
    is_synthetic = True


def _queue_lost(emitter: EventEmitter) -> None:
    # EventEmitter.queue_event itself: FSEventsEmitter's override would drop it as "recursive".
    EventEmitter.queue_event(emitter, EventsLostEvent(emitter.watch.path))


def fsevents_lost(events: Iterable[object]) -> bool:
    """Whether any native FSEvents event says the stream dropped events."""
    for event in events:
        flags = getattr(event, "flags", 0)
        if isinstance(flags, int) and flags & _FSEVENTS_LOST_FLAGS:
            return True
        if any(getattr(event, attr, False) is True for attr in _FSEVENTS_LOST_ATTRS):
            return True
    return False


def _make_observer() -> BaseObserver:
    """watchdog's observer for this platform, with an emitter that reports lost events."""
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyEmitter, InotifyObserver

        class _InotifyEmitter(InotifyEmitter):
            def on_thread_start(self) -> None:
                super().on_thread_start()
                # The watch group gets inotify's overflow callback; watchdog only logs it.
                group = self._inotify
                if group is not None:
                    overflowed = group.on_queue_overflow

                    def on_queue_overflow() -> None:
                        overflowed()
                        _queue_lost(self)

                    group.on_queue_overflow = on_queue_overflow  # type: ignore[method-assign]

        inotify = InotifyObserver()
        inotify._emitter_class = _InotifyEmitter
        return inotify
    if sys.platform == "darwin":
        from watchdog.observers.fsevents import FSEventsEmitter, FSEventsObserver

        class _FSEventsEmitter(FSEventsEmitter):
            def queue_events(self, timeout: float, events: list[object]) -> None:  # type: ignore[override]
                if fsevents_lost(events):
                    _queue_lost(self)
                super().queue_events(timeout, events)  # type: ignore[arg-type]

        fsevents = FSEventsObserver()
        fsevents._emitter_class = _FSEventsEmitter
        return fsevents
    return Observer()


def _nearest_existing_dir(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor or "/")


def _norm(path: str | bytes) -> str:
    return unicodedata.normalize("NFC", os.path.normpath(os.fsdecode(path)))


def resolve(path: Path) -> Path:
    """`path` with every symlink resolved (as far as it exists).

    Not normalized: on Linux an NFD name and its NFC spelling are two different files, so the
    path that is watched must stay as the filesystem spells it; only comparisons use NFC.
    """
    return Path(os.path.realpath(path))


class Poke(Protocol):
    """Tells the loop what an event means: whether to scan, whether to watch afresh."""

    def __call__(self, reason: str, *, scan: bool, rewatch: bool) -> None: ...


class _LossAware(FileSystemEventHandler):
    def on_events_lost(self, event: FileSystemEvent) -> None:
        """Handled in on_any_event; here so that dispatch() finds a method."""


class _Handler(_LossAware):
    """Runs on watchdog's thread: classify the event, then poke the loop."""

    def __init__(
        self,
        target: Path,
        watched: Path,
        poke: Poke,
        *,
        target_is_dir: bool,
        configured: Path | None = None,
    ) -> None:
        # The resolved target, and the path as configured: inotify reports paths as scheduled,
        # FSEvents canonical ones; either names the library.
        self._targets = {_norm(str(target))}
        if configured is not None:
            self._targets.add(_norm(str(configured)))
        self._target_dir_prefixes = tuple(t + os.sep for t in self._targets)
        wanted = [target] if target_is_dir else [target.parent]
        if configured is not None:
            wanted.append(configured if target_is_dir else configured.parent)
        self._wanted_dirs = {_norm(str(w)) for w in wanted}
        self._watched = _norm(str(watched))
        self._wants_parent = watched != target.parent if not target_is_dir else watched != target
        self._target_is_dir = target_is_dir
        self._poke = poke

    def _on_the_way(self, path: str) -> bool:
        """Whether `path` is the library's directory or one of its ancestors."""
        return any(w == path or w.startswith(path + os.sep) for w in self._wanted_dirs)

    def _hits_target(self, path: str) -> bool:
        return path in self._targets or (
            self._target_is_dir and path.startswith(self._target_dir_prefixes)
        )

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if isinstance(event, EventsLostEvent):
            self._poke("events_lost", scan=True, rewatch=False)
            return
        paths = [_norm(event.src_path)]
        if event.dest_path:
            paths.append(_norm(event.dest_path))
        # The watched directory itself went away or moved: the watch is dead, re-establish it.
        if isinstance(event, DirDeletedEvent | DirMovedEvent) and self._watched in paths:
            self._poke("watch_lost", scan=True, rewatch=True)
            return
        if any(self._hits_target(p) for p in paths):
            self._poke(event.event_type, scan=True, rewatch=False)
        elif self._wants_parent and any(self._on_the_way(p) for p in paths):
            # Watching an ancestor while the real directory is missing: a directory (or link)
            # on the way to it appeared or moved. Anything else there (a log file written in
            # that ancestor, say) must not restart the watch: each restart is logged, and the
            # log line would be the next event.
            self._poke("ancestor_changed", scan=False, rewatch=True)
        elif paths[0] == self._watched:
            # A change to the directory itself (FSEvents coalesces into these): stat to see.
            self._poke("directory_changed", scan=False, rewatch=False)


class _ParentHandler(_LossAware):
    """Watches the parent of the watched directory, for that directory alone.

    inotify keeps a watch on a directory's inode wherever it moves, and watchdog drops the
    IN_MOVE_SELF that says so: a library directory moved away (or swapped for another by a
    sync tool) would leave the daemon watching the old one, blind to the new one. Seen from
    its parent, the move, removal or (re)appearance of the directory is an ordinary event.
    """

    def __init__(self, watched: Path, poke: Poke) -> None:
        self._watched = _norm(str(watched))
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, EventsLostEvent):
            # The directory itself may have been replaced unseen: watch it afresh.
            self._poke("events_lost", scan=True, rewatch=True)
            return
        if not event.is_directory:
            return
        paths = [_norm(event.src_path)]
        if event.dest_path:
            paths.append(_norm(event.dest_path))
        if self._watched in paths and event.event_type in ("moved", "deleted", "created"):
            self._poke("watch_lost", scan=True, rewatch=True)


class LibraryWatcher:
    """Watches one library path (a file, or a directory bundle); notifies `changes` of each
    change."""

    def __init__(self, target: Path, changes: Debouncer, *, target_is_dir: bool = False) -> None:
        self.target = target
        self.changes = changes
        self.target_is_dir = target_is_dir
        self.watching: Path | None = None
        self._rewatch = anyio.Event()
        self._generation = 0

    def as_dict(self) -> dict[str, str | None]:
        """What `status` shows of the watch."""
        return {"watching": str(self.watching) if self.watching else None}

    def _on_loop(self, reason: str, *, scan: bool, rewatch: bool, generation: int) -> None:
        # A rewatch asked for by an observer that was already replaced is stale: honouring it
        # would restart the new watch for nothing.
        if rewatch and generation == self._generation:
            self._rewatch.set()
        if reason == "events_lost":
            log.warning("file_events_lost", path=str(self.target), action="rescanning")
        # Even a rewatch pokes the scanner: its stat check decides whether anything changed.
        self.changes.notify(reason, force=scan)

    def _wanted_dir(self, resolved: Path) -> Path:
        return resolved if self.target_is_dir else resolved.parent

    def _watch_dir(self, resolved: Path) -> Path:
        return resolve(_nearest_existing_dir(self._wanted_dir(resolved)))

    def _start_observer(self, resolved: Path, watched: Path, poke: Poke) -> BaseObserver:
        observer = _make_observer()
        handler = _Handler(
            resolved, watched, poke, target_is_dir=self.target_is_dir, configured=self.target
        )
        observer.schedule(
            handler, str(watched), recursive=self.target_is_dir and watched == resolved
        )
        if watched.parent != watched:
            # Only the watched directory's own creation, deletion or move matters there. The
            # filter is also inotify's mask: a write to a file beside it (a log, another
            # program's files) is not even reported, where each one used to wake the
            # observer's threads (about 90 ms of CPU per library edit with a log there).
            observer.schedule(
                _ParentHandler(watched, poke),
                str(watched.parent),
                event_filter=[DirCreatedEvent, DirDeletedEvent, DirMovedEvent, EventsLostEvent],
            )
        observer.daemon = True
        observer.start()
        return observer

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled. Reports started once the first watch is in place."""
        token = anyio.lowlevel.current_token()

        def poke(reason: str, *, scan: bool, rewatch: bool, generation: int) -> None:
            on_loop = partial(
                self._on_loop, reason, scan=scan, rewatch=rewatch, generation=generation
            )
            try:
                anyio.from_thread.run_sync(on_loop, token=token)
            except (anyio.RunFinishedError, RuntimeError):
                pass  # the loop is shutting down: nothing is listening any more

        started = False
        try:
            while True:
                # Off the loop, and never joined: realpath on a dead network volume can hang.
                resolved = await run_abandonable(partial(resolve, self.target))
                watched = await run_abandonable(partial(self._watch_dir, resolved))
                self._rewatch = anyio.Event()
                self._generation += 1
                poke_this = partial(poke, generation=self._generation)
                try:
                    observer = await anyio.to_thread.run_sync(
                        self._start_observer, resolved, watched, poke_this
                    )
                except OSError as err:
                    # e.g. inotify watch limit reached: degrade to the periodic stat check.
                    log.warning("watch_failed", path=str(watched), reason=str(err))
                    self.watching = None
                    if not started:
                        task_status.started()
                        started = True
                    await anyio.sleep(30)
                    continue
                self.watching = watched
                expected = self._wanted_dir(resolved)
                if watched != expected:
                    log.warning("library_dir_missing", path=str(expected), watching=str(watched))
                else:
                    log.info(
                        "watch_started",
                        path=str(watched),
                        target=str(self.target),
                        resolved=str(resolved) if resolved != self.target else None,
                    )
                if not started:
                    task_status.started()
                    started = True
                else:
                    self.changes.notify("rewatched", force=True)
                try:
                    await self._wait_for_rewatch(resolved)
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(_stop_observer, observer)
                log.info("watch_restarted", path=str(watched))
        finally:
            self.watching = None

    async def _wait_for_rewatch(self, resolved: Path) -> None:
        """Until a rewatch is asked for, or the configured path now resolves elsewhere."""
        while True:
            with anyio.move_on_after(RESOLVE_CHECK_SECONDS):
                await self._rewatch.wait()
                return
            now = await run_abandonable(partial(resolve, self.target))
            if now != resolved:
                log.info("library_path_repointed", path=str(self.target), now=str(now))
                return


def _stop_observer(observer: BaseObserver) -> None:
    observer.stop()
    observer.join(timeout=5)
