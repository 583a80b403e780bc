"""What the watch tests share: a scanner on a library it has never read, as the scanner's own
tests build one, and the notifications a real watcher makes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from daemon.config import LibraryConfig
from daemon.journal.recorder import Recorder
from daemon.library import LibraryRead, LibraryReader, ReadProgress
from daemon.watch.baseline import Snapshot
from daemon.watch.debounce import Debouncer
from daemon.watch.first_build import FirstBuild
from daemon.watch.progress import ScanProgress
from daemon.watch.removal_guard import RemovalGuard
from daemon.watch.scanner import Scanner


class CallReader:
    """A `LibraryReader` that calls `read_once` for each read: what a scanner test scripts."""

    def __init__(self, read_once: Callable[[], LibraryRead]) -> None:
        self.read_once = read_once

    def read(self, progress: ReadProgress | None = None) -> LibraryRead:
        return self.read_once()

    def forget(self) -> None:
        pass

    def cancel(self) -> None:
        pass


def fresh_scanner(
    path: Path,
    reader: LibraryReader,
    recorder: Recorder | None,
    *,
    settle_seconds: float = 0.01,
    settle_max_seconds: float = 0.1,
    snapshot: Snapshot | None = None,
    progress: ScanProgress | None = None,
    after_scan: Callable[[], None] = lambda: None,
    build: FirstBuild | None = None,
    **library: Any,
) -> Scanner:
    """No snapshot yet: its first scan builds one. `library` are LibraryConfig's fields;
    `snapshot` reads the baseline (a test that never diffs needs none); `build` is the one
    the reader streams into, if it does."""
    config = LibraryConfig(
        path=path, settle_seconds=settle_seconds, settle_max_seconds=settle_max_seconds, **library
    )
    return Scanner(
        library=config,
        reader=reader,
        snapshot=snapshot,  # type: ignore[arg-type]  # None: the test never diffs
        baseline_count=0,
        baseline_stat=None,
        build=build or FirstBuild(recorder, due=True),  # type: ignore[arg-type]  # as recorder
        recorder=recorder,  # type: ignore[arg-type]  # None: the test never records a scan
        changes=Debouncer(settle_seconds=settle_seconds, settle_max_seconds=settle_max_seconds),
        removal_guard=RemovalGuard(
            ratio=config.mass_removal_ratio,
            confirm_seconds=config.mass_removal_confirm_seconds,
            accept_command="musicd rescan --accept-removals",
        ),
        progress=progress,
        after_scan=after_scan,
    )


def unsettled() -> Debouncer:
    """No settling: each burst is what the watcher notified since the one before."""
    return Debouncer(settle_seconds=0, settle_max_seconds=0)


def _touch(path: Path) -> None:
    path.write_bytes(os.urandom(8))


async def noticed(changes: Debouncer, path: Path) -> frozenset[str]:
    """Edit `path` until the watcher notifies `changes`; the reasons it gave."""
    bursts = changes.settled(quiet_seconds=lambda: 0.5)
    async with contextlib.aclosing(bursts):
        with anyio.fail_after(10):
            while True:
                await anyio.to_thread.run_sync(_touch, path)
                burst = await anext(bursts)
                if burst.reasons:
                    return burst.reasons
