"""Scan progress: the reader reports per chunk from its read thread; `status` reads it, and
`musicd run`'s progress line waits on it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from daemon.cli.progress import ProgressConsole, render
from daemon.library.fast_xml import FastXmlReader
from daemon.library.xml_reader import CHUNK_SIZE, read_library_xml
from daemon.watch.progress import ScanProgress
from tests.benchmarks.generate import generate_library
from tests.support import wait_for
from tests.watch.scanner_support import fresh_scanner


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_is_none_and_a_scan_has_rate_and_eta() -> None:
    clock = Clock()
    p = ScanProgress(clock)
    assert p.snapshot() is None
    with p.scanning("startup", expected_tracks=0):
        p.update(bytes_total=1000, bytes_done=0)
        clock.now += 2
        p.update(bytes_done=250, tracks_done=40)
        snap = p.snapshot()
        assert snap is not None
        assert snap["reason"] == "startup" and snap["tracks_expected"] is None
        assert snap["fraction"] == 0.25
        assert snap["bytes_per_second"] == 125
        assert snap["eta_seconds"] == 6.0
    assert p.snapshot() is None


def test_tracks_give_the_estimate_when_there_are_no_bytes() -> None:
    clock = Clock()
    p = ScanProgress(clock)
    with p.scanning("rescan", expected_tracks=1000):
        clock.now += 1
        p.update(tracks_done=100)
        snap = p.snapshot()
        assert snap is not None
        assert snap["fraction"] == 0.1 and snap["eta_seconds"] == 9.0


class Recording(ScanProgress):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []
        self.threads: set[int] = set()

    def update(self, **values: Any) -> None:
        self.calls.append(values)
        self.threads.add(threading.get_ident())
        super().update(**values)


async def test_the_scanner_s_read_reports_each_chunk_from_its_read_thread(tmp_path: Path) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(generate_library(4000))
    size = library.stat().st_size
    assert size > 3 * CHUNK_SIZE
    p = Recording()
    scanner = fresh_scanner(library, FastXmlReader(library), None, progress=p)
    with p.scanning("startup", expected_tracks=0):
        with anyio.fail_after(60):
            tracks = (await scanner._read_once()).count()
    assert p.threads and threading.get_ident() not in p.threads
    assert p.calls[0] == {"bytes_done": 0, "bytes_total": size, "tracks_done": 0}
    done = [c["bytes_done"] for c in p.calls[1:]]
    assert done == sorted(done) and done[-1] == size
    assert len(done) == -(-size // CHUNK_SIZE)  # one report per chunk, not per track
    counted = [c["tracks_done"] for c in p.calls[1:]]
    assert 0 < counted[0] < counted[-1] <= tracks


def test_a_reader_given_no_progress_reports_nothing(tmp_path: Path) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(generate_library(50))
    assert len(read_library_xml(library).tracks) == 50


def test_a_waiter_wakes_when_a_scan_starts_and_when_it_ends() -> None:
    p = ScanProgress()
    woke: list[str] = []

    def wait() -> None:
        p.wait_for_scan(lambda: False)
        woke.append("started")
        p.wait_for_change(10)
        woke.append("ended")

    thread = threading.Thread(target=wait)
    thread.start()
    with p.scanning("startup", expected_tracks=0):
        wait_for(lambda: woke == ["started"], what="the waiter to see the scan start")
    thread.join(10)
    assert woke == ["started", "ended"]


def test_wake_waiters_lets_a_stopped_display_go() -> None:
    p = ScanProgress()
    stopped = threading.Event()
    thread = threading.Thread(target=p.wait_for_scan, args=(stopped.is_set,))
    thread.start()
    stopped.set()
    p.wake_waiters()
    thread.join(10)
    assert not thread.is_alive()


class Terminal:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_log_lines_go_above_the_progress_line() -> None:
    term = Terminal()
    console = ProgressConsole(term)  # type: ignore[arg-type]
    console.show("scanning 10%")
    console.write("2026-12-01 track_modified\n")
    assert term.text == "\r\x1b[Kscanning 10%\r\x1b[K2026-12-01 track_modified\nscanning 10%"
    console.clear()
    assert term.text.endswith("scanning 10%\r\x1b[K")


@pytest.mark.parametrize("width", [40, 200])
def test_the_line_fits_the_terminal(width: int) -> None:
    snap = {"elapsed_seconds": 3.0, "fraction": 0.5, "bytes_done": 5, "bytes_total": 10}
    line = render(snap, width)
    assert line.startswith("scanning [") and len(line) < width
