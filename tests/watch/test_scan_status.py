"""What `status` says about scanning, and the one log line per change of it."""

from __future__ import annotations

import errno
from pathlib import Path

from structlog.testing import capture_logs

from daemon.errors import LibraryChangedDuringRead, LibraryReadError
from daemon.library import LibraryRead
from daemon.watch.scan_status import ScanStatus

LIBRARY = Path("/music/Library.xml")


def _events(logs: list[dict[str, object]]) -> list[object]:
    return [entry["event"] for entry in logs]


def test_a_library_that_stays_broken_is_logged_once() -> None:
    status = ScanStatus()
    broken = LibraryReadError("not a library: no Tracks dict")
    denied = LibraryReadError("Permission denied")
    with capture_logs() as logs:
        for _ in range(3):
            status.read_failed(broken, LIBRARY, errno=None, missing=False)
        for _ in range(3):
            status.read_failed(denied, LIBRARY, errno=errno.EACCES, missing=False)
        for _ in range(3):
            status.read_failed(broken, LIBRARY, errno=None, missing=True)
    # One line when it breaks, one per new error, one when it goes missing: never a repeat.
    assert _events(logs) == [
        "library_unreadable",
        "library_access_failed",
        "library_unreadable",
        "library_missing",
    ]
    assert status.library_missing and status.library_error is None
    with capture_logs() as logs:
        status.read_succeeded(LibraryRead(tracks={}, stat=None, source="xml"), LIBRARY)
    assert _events(logs) == ["library_readable_again"]
    assert status.reader_error is None and not status.library_missing


def test_a_busy_library_is_logged_each_time() -> None:
    status = ScanStatus()
    busy = LibraryChangedDuringRead("the file changed while it was read")
    with capture_logs() as logs:
        for _ in range(3):
            status.read_failed(busy, LIBRARY, errno=None, missing=False)
    assert _events(logs) == ["library_busy"] * 3
