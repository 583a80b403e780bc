"""A live progress line on a terminal: for `musicd run` (its own scans) and `musicd rescan`.

One line on stderr, redrawn in place with `\\r` and cleared when the scan ends. It is written only
to a terminal, never to the log file. While `musicd run` logs to the same terminal, the log
lines go through `ProgressConsole.write`, which takes the progress line away, writes the log
line and draws the progress line again below it, so the two never garble each other.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import daemon.cli.format as cli_format

if TYPE_CHECKING:
    from daemon.client import MusicdClient
    from daemon.watch.progress import ScanProgress

_CLEAR = "\r\x1b[K"
# A scan shorter than this never shows a line: a flash of text helps nobody.
SHOW_AFTER_SECONDS = 0.5
REDRAW_SECONDS = 0.2


def render(snapshot: dict[str, Any], width: int) -> str:
    """The progress line for a `scan_in_progress` value, cut to the terminal's width."""
    text = f"scanning {cli_format.bar(snapshot.get('fraction'))} {cli_format.progress(snapshot)}"
    return text[: max(width - 1, 10)]


class ProgressConsole:
    """A terminal stream that keeps one progress line at the bottom; thread-safe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._line = ""

    # -- the file-like side, for the console log handler
    def write(self, text: str) -> int:
        with self._lock:
            if self._line:
                self._stream.write(_CLEAR)
            self._stream.write(text)
            if self._line and text.endswith("\n"):
                self._stream.write(self._line)
            self._stream.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    # -- the progress side
    def show(self, line: str) -> None:
        with self._lock:
            self._line = line
            self._stream.write(_CLEAR + line)
            self._stream.flush()

    def clear(self) -> None:
        with self._lock:
            if self._line:
                self._line = ""
                self._stream.write(_CLEAR)
                self._stream.flush()


def _width() -> int:
    return shutil.get_terminal_size((80, 24)).columns


@contextmanager
def local_scans(console: ProgressConsole, progress: ScanProgress) -> Iterator[None]:
    """While the block runs, show the scans `progress` tells of (`musicd run`'s own) on
    `console`."""
    stopped = threading.Event()

    def draw() -> None:
        while not stopped.is_set():
            snapshot = progress.snapshot()
            if snapshot is None:
                console.clear()
                # Idle: sleep until a scan starts (nothing polls while the daemon is idle).
                progress.wait_for_scan(stopped.is_set)
                continue
            if snapshot["elapsed_seconds"] >= SHOW_AFTER_SECONDS:
                console.show(render(snapshot, _width()))
            progress.wait_for_change(REDRAW_SECONDS)
        console.clear()

    with _drawing(draw, stopped, wake=progress.wake_waiters, join_seconds=1.0):
        yield


@contextmanager
def remote_scan(
    socket: Path, stream: TextIO, client_factory: Callable[[Path], MusicdClient]
) -> Iterator[None]:
    """While the block runs (a `rescan` request waits), show the daemon's scan on `stream`.

    Polls `status` on a connection of its own: the waiting one is busy with the rescan.
    """
    console = ProgressConsole(stream)
    stopped = threading.Event()

    def draw() -> None:
        try:
            with client_factory(socket) as client:
                while not stopped.wait(REDRAW_SECONDS):
                    snapshot = client.status().get("scan_in_progress")
                    if snapshot and snapshot["elapsed_seconds"] >= SHOW_AFTER_SECONDS:
                        console.show(render(snapshot, _width()))
        except Exception:
            # The progress line is a nicety: the rescan's own answer says what happened.
            return
        finally:
            console.clear()

    with _drawing(draw, stopped, join_seconds=2.0):
        yield


@contextmanager
def _drawing(
    draw: Callable[[], None],
    stopped: threading.Event,
    *,
    wake: Callable[[], None] | None = None,
    join_seconds: float,
) -> Iterator[None]:
    """Run `draw` on a thread of its own while the block runs; then set `stopped`, `wake` it
    and wait for it a bounded time (it is a daemon thread: it never holds up the exit)."""
    thread = threading.Thread(target=draw, name="musicd-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        if wake is not None:
            wake()
        thread.join(timeout=join_seconds)
