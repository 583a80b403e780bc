"""FSEvents as it really is: canonical paths (`/var/...` is reported as `/private/var/...`).

tests/watch/test_watcher.py feeds the handler such paths on any system; these run the real
observer, so they mean something only on a Mac.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from daemon.watch.watcher import LibraryWatcher, _make_observer
from tests.watch.scanner_support import noticed, unsettled

pytestmark = pytest.mark.macos


@pytest.fixture
def var_dir() -> Iterator[Path]:
    """A temp dir under /var, which macOS makes a symlink to /private/var (whatever $TMPDIR)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


class _Recorder(FileSystemEventHandler):
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.seen = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.paths.append(os.fsdecode(event.src_path))
        self.seen.set()


def test_fsevents_reports_the_canonical_path_of_a_var_temp_dir(var_dir: Path) -> None:
    assert os.path.realpath(var_dir) != str(var_dir)  # the premise: /var is a symlink
    recorder = _Recorder()
    observer = _make_observer()
    observer.schedule(recorder, str(var_dir))
    observer.start()
    try:
        (var_dir / "Library.xml").write_bytes(b"x")
        assert recorder.seen.wait(10)
    finally:
        observer.stop()
        observer.join(5)
    canonical = os.path.realpath(var_dir)
    assert all(p.startswith(canonical) for p in recorder.paths), recorder.paths


async def test_the_watcher_watches_the_realpath_and_sees_an_edit_made_through_var(
    var_dir: Path,
) -> None:
    library = var_dir / "Library.xml"
    library.write_bytes(b"x")
    canonical = Path(os.path.realpath(var_dir))  # noqa: ASYNC240 -- a local dir, before the loop
    changes = unsettled()
    lw = LibraryWatcher(library, changes)
    async with anyio.create_task_group() as tg:
        await tg.start(lw.run)
        assert lw.watching == canonical
        reasons = await noticed(changes, library)
        assert reasons & {"modified", "closed", "created"}, reasons
        tg.cancel_scope.cancel()
