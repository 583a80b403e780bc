"""The watcher on paths that are not canonical: symlinked directories, other Unicode forms.

FSEvents reports canonical paths (`/private/var/...`, the real volume behind a symlinked
`~/Music`); these tests feed the handler such paths on Linux, and run the real watcher on a
library reached through a symlink.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import anyio
import anyio.to_thread
import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
)

from daemon.watch import watcher as watcher_mod
from daemon.watch.watcher import (
    EventsLostEvent,
    LibraryWatcher,
    Poke,
    _Handler,
    _make_observer,
    _ParentHandler,
    fsevents_lost,
    resolve,
)
from tests.support import wait_for
from tests.watch.scanner_support import noticed, unsettled

Pokes = list[tuple[str, bool, bool]]


def poke_into(pokes: Pokes) -> Poke:
    def poke(reason: str, *, scan: bool, rewatch: bool) -> None:
        pokes.append((reason, scan, rewatch))

    return poke


def linked_library(tmp_path: Path) -> tuple[Path, Path]:
    """A library file in real/, configured through link/ -> real/ (as ~/Music on a volume)."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "Library.xml").write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    return link / "Library.xml", real / "Library.xml"


def handler_for(configured: Path, pokes: Pokes) -> _Handler:
    resolved = resolve(configured)
    return _Handler(
        resolved,
        resolved.parent,
        poke_into(pokes),
        target_is_dir=False,
        configured=configured,
    )


def test_a_file_written_in_the_watched_ancestor_does_not_restart_the_watch(tmp_path: Path) -> None:
    # The library's directory is missing, so its parent is watched; the daemon's own log file
    # lives there. Restarting the watch for that file's writes logs a line, which is the next
    # write: the watch restarted every few ms and the scan waited for the settle ceiling.
    library = tmp_path / "lib" / "Library.xml"
    pokes: Pokes = []
    handler = _Handler(library, tmp_path, poke_into(pokes), target_is_dir=False)
    handler.on_any_event(FileModifiedEvent(str(tmp_path / "musicd.log")))
    handler.on_any_event(DirCreatedEvent(str(tmp_path / "lib.away")))
    assert pokes == []
    handler.on_any_event(DirMovedEvent(str(tmp_path / "lib.away"), str(tmp_path / "lib")))
    assert pokes == [("ancestor_changed", False, True)]


def test_canonical_event_paths_hit_a_library_reached_through_a_symlink(tmp_path: Path) -> None:
    configured, real = linked_library(tmp_path)
    pokes: Pokes = []
    handler = handler_for(configured, pokes)
    handler.dispatch(FileModifiedEvent(str(real)))
    # A save by rename, reported canonical on both sides.
    handler.dispatch(FileMovedEvent(str(real.parent / ".Library.xml.tmp"), str(real)))
    assert pokes == [("modified", True, False), ("moved", True, False)]


def test_the_configured_spelling_still_hits(tmp_path: Path) -> None:
    # inotify reports paths as they were scheduled: both spellings name the library.
    configured, _real = linked_library(tmp_path)
    pokes: Pokes = []
    handler_for(configured, pokes).dispatch(FileModifiedEvent(str(configured)))
    assert pokes == [("modified", True, False)]


def test_other_files_in_the_directory_do_not_scan(tmp_path: Path) -> None:
    configured, real = linked_library(tmp_path)
    pokes: Pokes = []
    handler_for(configured, pokes).dispatch(FileModifiedEvent(str(real.parent / "other.txt")))
    assert pokes == []


def test_a_decomposed_name_matches_the_composed_config(tmp_path: Path) -> None:
    name = "Bibliothèque.xml"
    composed = tmp_path / unicodedata.normalize("NFC", name)
    composed.write_bytes(b"x")
    pokes: Pokes = []
    handler = handler_for(composed, pokes)
    decomposed = str(tmp_path / unicodedata.normalize("NFD", name))
    handler.dispatch(FileModifiedEvent(decomposed))
    assert pokes == [("modified", True, False)]


def test_lost_events_force_a_rescan_and_a_new_watch_of_the_directory(tmp_path: Path) -> None:
    configured, real = linked_library(tmp_path)
    pokes: Pokes = []
    handler_for(configured, pokes).dispatch(EventsLostEvent(str(real.parent)))
    _ParentHandler(real.parent, poke_into(pokes)).dispatch(EventsLostEvent(str(tmp_path)))
    assert pokes == [("events_lost", True, False), ("events_lost", True, True)]


@pytest.mark.parametrize(
    ("event", "lost"),
    [
        (SimpleNamespace(flags=0x1), True),  # MustScanSubDirs
        (SimpleNamespace(flags=0x2 | 0x1), True),  # UserDropped
        (SimpleNamespace(flags=0x4 | 0x1), True),  # KernelDropped
        (SimpleNamespace(flags=0x10000), False),  # ItemModified only
        (SimpleNamespace(must_scan_subdirs=True), True),
        (SimpleNamespace(is_kernel_dropped=False, is_modified=True), False),
    ],
)
def test_fsevents_flags_that_mean_events_were_dropped(event: object, lost: bool) -> None:
    assert fsevents_lost([event]) is lost


async def test_real_watch_through_a_symlinked_directory(tmp_path: Path) -> None:
    configured, real = linked_library(tmp_path)
    changes = unsettled()
    lw = LibraryWatcher(configured, changes)
    async with anyio.create_task_group() as tg:
        await tg.start(lw.run)
        assert lw.watching == real.parent
        reasons = await noticed(changes, real)
        assert reasons & {"modified", "closed", "created"}
        tg.cancel_scope.cancel()


async def test_a_repointed_symlink_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_mod, "RESOLVE_CHECK_SECONDS", 0.1)
    configured, real = linked_library(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "Library.xml").write_bytes(b"y")
    changes = unsettled()
    lw = LibraryWatcher(configured, changes)
    async with anyio.create_task_group() as tg:
        await tg.start(lw.run)
        assert lw.watching == real.parent
        link = tmp_path / "link"
        link.unlink()
        link.symlink_to(other, target_is_directory=True)
        # Re-pointing is seen by the periodic resolve check, which then rewatches (and wakes).
        bursts = changes.settled(quiet_seconds=lambda: math.inf)
        async with contextlib.aclosing(bursts):
            with anyio.fail_after(10):
                while lw.watching != other:
                    await anext(bursts)
        reasons = await noticed(changes, other / "Library.xml")
        assert reasons & {"modified", "closed", "created", "rewatched"}
        tg.cancel_scope.cancel()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_an_inotify_overflow_reaches_the_handler_whatever_the_log_level(tmp_path: Path) -> None:
    # watchdog only logs the overflow: the emitter itself must say so, with logging silenced.
    pokes: Pokes = []
    got = threading.Event()

    def poke(reason: str, *, scan: bool, rewatch: bool) -> None:
        pokes.append((reason, scan, rewatch))
        got.set()

    observer = _make_observer()
    handler = _Handler(tmp_path / "Library.xml", tmp_path, poke, target_is_dir=False)
    observer.schedule(handler, str(tmp_path))
    observer.start()
    logging.disable(logging.CRITICAL)
    try:
        emitters = list(observer.emitters)
        assert emitters
        group = emitters[0]._inotify  # type: ignore[attr-defined]
        group.on_queue_overflow()
        assert got.wait(5)
    finally:
        logging.disable(logging.NOTSET)
        observer.stop()
        observer.join(5)
    assert pokes == [("events_lost", True, False)]


async def test_a_decomposed_directory_name_is_watched_as_spelled(tmp_path: Path) -> None:
    # On Linux the NFD and NFC spellings are different directories: the watch must use the
    # one that exists, while events still match the library.
    folder = tmp_path / unicodedata.normalize("NFD", "Bibliothèque")
    folder.mkdir()
    library = folder / "Library.xml"
    library.write_bytes(b"x")
    changes = unsettled()
    lw = LibraryWatcher(library, changes)
    async with anyio.create_task_group() as tg:
        await tg.start(lw.run)
        assert lw.watching == folder
        assert (await noticed(changes, library)) & {"modified", "closed", "created"}
        tg.cancel_scope.cancel()


async def test_writes_beside_the_watched_directory_do_not_wake_the_watcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The parent directory is watched only for the library directory's own moves; a log file
    # written there (as in the test layout) or another program's files must not reach the
    # observer's threads at all. Events of one watch arrive in order: once the marker
    # directory's creation is seen, the writes before it would have been too.
    library = tmp_path / "lib" / "Library.xml"
    library.parent.mkdir()
    library.write_bytes(b"x")
    seen: list[FileSystemEvent] = []
    monkeypatch.setattr(watcher_mod._ParentHandler, "on_any_event", lambda _, e: seen.append(e))
    lw = LibraryWatcher(library, unsettled())
    async with anyio.create_task_group() as tg:
        await tg.start(lw.run)
        log = tmp_path / "musicd.log"
        with log.open("ab") as fh:
            for _ in range(50):
                fh.write(b"a line\n")
                fh.flush()
        (tmp_path / "marker").mkdir()
        await anyio.to_thread.run_sync(
            wait_for, lambda: any(str(e.src_path).endswith("marker") for e in seen)
        )
        tg.cancel_scope.cancel()
    assert [e for e in seen if str(e.src_path).endswith("musicd.log")] == []
