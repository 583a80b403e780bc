"""The scanner's deadlines: a read or a stat that never returns is reported, not waited for.

The blocking calls here stand in for what cannot be made to hang on Linux on demand: a read
waiting on a macOS privacy prompt, a stat on a network volume that stopped answering.
"""

from __future__ import annotations

import errno
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from daemon.errors import LibraryReadStalled
from daemon.library import FileStat, LibraryRead
from daemon.watch import scanner as scanner_mod
from daemon.watch.debounce import Burst
from daemon.watch.scanner import Scanner, StatFailed
from tests.support import wait_for
from tests.watch.scanner_support import CallReader, fresh_scanner


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a test's thread blocked


def make_scanner(path: Path, reader: Any) -> Scanner:
    # These tests never record a scan; a read is stalled after 0.2 s.
    return fresh_scanner(path, CallReader(reader), None, read_timeout_seconds=0.2)


async def test_a_read_past_its_deadline_is_stalled_then_used_when_it_ends(
    tmp_path: Path, gate: threading.Event
) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(b"x")
    result = LibraryRead(tracks={}, stat=FileStat.of(library), source="xml")
    calls: list[int] = []

    def reader() -> LibraryRead:
        calls.append(1)
        gate.wait()
        return result

    scanner = make_scanner(library, reader)
    with anyio.fail_after(5):
        with pytest.raises(LibraryReadStalled, match="has not finished after"):
            await scanner._read_once()
        assert scanner.status.read_stalled() is not None
        # Asked again while it still hangs: the same read is waited for, not a second one.
        with pytest.raises(LibraryReadStalled):
            await scanner._read_once()
        assert calls == [1]
        gate.set()
        bursts = scanner.changes.settled(quiet_seconds=lambda: math.inf)
        finished = Burst(reasons=frozenset({"stalled_read_finished"}), forced=True)
        assert await anext(bursts) == finished
        assert scanner.status.read_stalled() is None
        assert await scanner._read_once() is result
    assert calls == [1]


async def test_a_stat_that_hangs_is_a_timeout_and_never_doubled(
    tmp_path: Path, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(b"x")
    real = scanner_mod.library_stat
    stats: list[Path] = []

    def hanging_stat(path: Path) -> FileStat | None:
        stats.append(path)
        gate.wait()
        return real(path)

    monkeypatch.setattr(scanner_mod, "library_stat", hanging_stat)
    scanner = make_scanner(library, lambda: None)
    with anyio.fail_after(5):
        assert await scanner._stat() == StatFailed(errno.ETIMEDOUT)
        assert await scanner._stat() == StatFailed(errno.ETIMEDOUT)
        assert len(stats) == 1
        gate.set()
        await anyio.to_thread.run_sync(wait_for, lambda: not scanner._stat_pending)
        assert await scanner._stat() == FileStat.of(library)


async def test_stat_errors_are_values(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    scanner = make_scanner(loop / "Library.xml", lambda: None)
    assert await scanner._stat() == StatFailed(errno.ELOOP)
    assert await make_scanner(tmp_path / "none.xml", lambda: None)._stat() is None


def test_a_read_left_running_does_not_keep_the_process_alive() -> None:
    # anyio's worker threads would hold the interpreter at exit; the read's thread must not.
    code = (
        "import threading, anyio\n"
        "from daemon.watch.read_job import ReadJob, run_abandonable\n"
        "async def main():\n"
        "    ReadJob(threading.Event().wait)\n"
        "    with anyio.move_on_after(0.1):\n"
        "        await run_abandonable(threading.Event().wait)\n"
        "anyio.run(main)\n"
        "print('returned')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"returned\n"
