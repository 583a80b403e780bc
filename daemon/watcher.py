"""The watchdog → anyio bridge: file events become a coalesced "look again" signal.

watchdog calls our handler on its observer thread. The handler never queues events: it sets a
flag on the event loop through `anyio.from_thread.run_sync(..., token=token)`, so a burst of
thousands of events costs one wake-up. Stopping the observer joins its thread, which must not
happen on the loop thread (watchdog holds a lock while our handler waits for the loop), so it
runs in a worker thread under a shield.

The library's *parent directory* is watched, because apps save by writing a temp file and
renaming it over the old one. When that directory does not exist yet, the nearest existing
ancestor is watched instead and the watch moves down as directories appear. inotify queue
overflows (which watchdog only logs) are turned into a forced rescan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import structlog
from anyio.abc import TaskStatus
from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

log = structlog.get_logger(__name__)


@dataclass
class Wakeup:
    """A re-armable, coalescing signal with the reasons it was notified for since take()."""

    _event: anyio.Event = field(default_factory=anyio.Event)
    reasons: set[str] = field(default_factory=set)
    forced: bool = False

    def notify(self, reason: str, *, force: bool = False) -> None:
        self.reasons.add(reason)
        self.forced = self.forced or force
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def take(self) -> tuple[set[str], bool]:
        """Return and clear what accumulated; the next notify() wakes wait() again."""
        reasons, forced = self.reasons, self.forced
        self.reasons, self.forced = set(), False
        self._event = anyio.Event()
        return reasons, forced


def _nearest_existing_dir(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor or "/")


def _norm(path: str | bytes) -> str:
    return os.path.normpath(os.fsdecode(path))


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: classify the event, then poke the loop."""

    def __init__(
        self,
        target: Path,
        watched: Path,
        poke: Callable[[str, bool, bool], None],
        *,
        target_is_dir: bool,
    ) -> None:
        self._target = _norm(str(target))
        self._target_dir_prefix = self._target + os.sep
        self._watched = _norm(str(watched))
        self._wants_parent = watched != target.parent if not target_is_dir else watched != target
        self._target_is_dir = target_is_dir
        self._poke = poke

    def _hits_target(self, path: str) -> bool:
        return path == self._target or (
            self._target_is_dir and path.startswith(self._target_dir_prefix)
        )

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [_norm(event.src_path)]
        if event.dest_path:
            paths.append(_norm(event.dest_path))
        # The watched directory itself went away or moved: the watch is dead, re-establish it.
        if isinstance(event, DirDeletedEvent | DirMovedEvent) and self._watched in paths:
            self._poke("watch_lost", True, True)
            return
        if any(self._hits_target(p) for p in paths):
            self._poke(event.event_type, True, False)
        elif self._wants_parent:
            # Watching an ancestor while the real directory is missing: anything may be it.
            self._poke("ancestor_changed", False, True)
        elif paths[0] == self._watched:
            # A change to the directory itself (FSEvents coalesces into these): stat to see.
            self._poke("directory_changed", False, False)


class _ParentHandler(FileSystemEventHandler):
    """Watches the parent of the watched directory, for that directory alone.

    inotify keeps a watch on a directory's inode wherever it moves, and watchdog drops the
    IN_MOVE_SELF that says so: a library directory moved away (or swapped for another by a
    sync tool) would leave the daemon watching the old one, blind to the new one. Seen from
    its parent, the move, removal or (re)appearance of the directory is an ordinary event.
    """

    def __init__(self, watched: Path, poke: Callable[[str, bool, bool], None]) -> None:
        self._watched = _norm(str(watched))
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            return
        paths = [_norm(event.src_path)]
        if event.dest_path:
            paths.append(_norm(event.dest_path))
        if self._watched in paths and event.event_type in ("moved", "deleted", "created"):
            self._poke("watch_lost", True, True)


class _OverflowHandler(logging.Handler):
    """watchdog logs inotify's queue overflow and drops it: turn that log line into a rescan."""

    def __init__(self, poke: Callable[[str, bool, bool], None]) -> None:
        super().__init__(logging.WARNING)
        self._poke = poke

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().lower()
        if "overflow" in message or "rescan" in message:
            self._poke("events_lost", True, False)


class LibraryWatcher:
    """Watches one library path (a file, or a directory bundle) and sets `wakeup` on change."""

    def __init__(self, target: Path, wakeup: Wakeup, *, target_is_dir: bool = False) -> None:
        self.target = target
        self.wakeup = wakeup
        self.target_is_dir = target_is_dir
        self.watching: Path | None = None
        self._rewatch = anyio.Event()
        self._generation = 0

    def _on_loop(self, reason: str, scan: bool, rewatch: bool, generation: int = -1) -> None:
        # A rewatch asked for by an observer that was already replaced is stale: honouring it
        # would restart the new watch for nothing.
        if rewatch and generation in (-1, self._generation):
            self._rewatch.set()
        if reason == "events_lost":
            log.warning("file_events_lost", path=str(self.target), action="rescanning")
        # Even a rewatch pokes the scanner: its stat check decides whether anything changed.
        self.wakeup.notify(reason, force=scan)

    def _watch_dir(self) -> Path:
        want = self.target if self.target_is_dir else self.target.parent
        return _nearest_existing_dir(want)

    def _start_observer(
        self, watched: Path, poke: Callable[[str, bool, bool], None]
    ) -> BaseObserver:
        observer = Observer()
        handler = _Handler(self.target, watched, poke, target_is_dir=self.target_is_dir)
        observer.schedule(
            handler, str(watched), recursive=self.target_is_dir and watched == self.target
        )
        if watched.parent != watched:
            observer.schedule(_ParentHandler(watched, poke), str(watched.parent))
        observer.daemon = True
        observer.start()
        return observer

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled. Reports started once the first watch is in place."""
        token = anyio.lowlevel.current_token()

        def poke(reason: str, scan: bool, rewatch: bool, generation: int = -1) -> None:
            try:
                anyio.from_thread.run_sync(
                    self._on_loop, reason, scan, rewatch, generation, token=token
                )
            except (anyio.RunFinishedError, RuntimeError):
                pass  # the loop is shutting down: nothing is listening any more

        overflow = _OverflowHandler(poke)
        watchdog_logger = logging.getLogger("watchdog")
        watchdog_logger.addHandler(overflow)
        started = False
        try:
            while True:
                watched = self._watch_dir()
                self._rewatch = anyio.Event()
                self._generation += 1
                poke_this = partial(_poke_for, poke, self._generation)
                try:
                    observer = await anyio.to_thread.run_sync(
                        self._start_observer, watched, poke_this
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
                expected = self.target if self.target_is_dir else self.target.parent
                if watched != expected:
                    log.warning("library_dir_missing", path=str(expected), watching=str(watched))
                else:
                    log.info("watch_started", path=str(watched), target=str(self.target))
                if not started:
                    task_status.started()
                    started = True
                else:
                    self.wakeup.notify("rewatched", force=True)
                try:
                    await self._rewatch.wait()
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(_stop_observer, observer)
                log.info("watch_restarted", path=str(watched))
        finally:
            watchdog_logger.removeHandler(overflow)
            self.watching = None


def _poke_for(
    poke: Callable[[str, bool, bool, int], None],
    generation: int,
    reason: str,
    scan: bool,
    rewatch: bool,
) -> None:
    poke(reason, scan, rewatch, generation)


def _stop_observer(observer: BaseObserver) -> None:
    observer.stop()
    observer.join(timeout=5)
