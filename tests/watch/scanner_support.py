"""A scanner on a library it has never read, as the scanner's own tests build one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.config import LibraryConfig
from daemon.journal.recorder import Recorder
from daemon.library import LibraryRead
from daemon.watch.baseline import Snapshot
from daemon.watch.debounce import Wakeup
from daemon.watch.removal_guard import RemovalGuard
from daemon.watch.scanner import Scanner


def fresh_scanner(
    path: Path,
    reader: Callable[[], LibraryRead],
    recorder: Recorder | None,
    *,
    settle_seconds: float = 0.01,
    settle_max_seconds: float = 0.1,
    snapshot: Snapshot | None = None,
    **library: Any,
) -> Scanner:
    """No snapshot yet: its first scan builds one. `library` are LibraryConfig's fields;
    `snapshot` reads the baseline (a test that never diffs needs none)."""
    config = LibraryConfig(
        path=path, settle_seconds=settle_seconds, settle_max_seconds=settle_max_seconds, **library
    )
    return Scanner(
        library=config,
        reader=reader,
        snapshot=snapshot,  # type: ignore[arg-type]  # None: the test never diffs
        baseline_count=0,
        baseline_stat=None,
        initial_build=True,
        recorder=recorder,  # type: ignore[arg-type]  # None: the test never records a scan
        wakeup=Wakeup(),
        removal_guard=RemovalGuard(
            ratio=config.mass_removal_ratio,
            confirm_seconds=config.mass_removal_confirm_seconds,
            accept_command="musicd rescan --accept-removals",
        ),
    )
