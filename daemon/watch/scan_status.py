"""What `status` reports about scanning, and the log line that goes with each change of it.

An unreadable, missing or inaccessible library is logged when it starts (or its error
changes), not at every failed read: a library that stays broken must not write an error line
every minute. A library that kept changing during the read is logged each time.
"""

from __future__ import annotations

import errno as errno_mod
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

from daemon.errors import LibraryChangedDuringRead, LibraryReadError, LibraryReadStalled
from daemon.library import LibraryRead
from daemon.library.access import LibraryError, describe_library_error, errno_name
from daemon.mac.launchd import installed_plist

log = structlog.get_logger(__name__)

# Errors that mean "the library is not there (yet)", not "something is wrong with it".
_MISSING_ERRNOS = frozenset({errno_mod.ENOENT})


@dataclass
class ScanStatus:
    """What `status` reports about scanning."""

    last_scan_at: float | None = None
    last_scan_duration_ms: float | None = None
    last_scan_reason: str | None = None
    last_counts: dict[str, int] = field(default_factory=dict)
    scans: int = 0
    reader_error: str | None = None
    reader_error_at: float | None = None
    # The last scan's events could not be committed; it is read and recorded again.
    database_error: str | None = None
    # None until a scanner exists (the baseline is still loading): not known yet.
    library_missing: bool | None = False
    held_removals: int = 0
    held_since: float | None = None
    without_persistent_id: int = 0
    duplicate_ids: int = 0
    # An OS error on the library (stat, open, read): its errno, message and what fixes it.
    library_error: LibraryError | None = None
    # When the read that is still running past library.read_timeout_seconds started.
    read_stalled_since: float | None = None

    def library_dict(self) -> dict[str, object]:
        """What `status` shows of the library, as the scans found it."""
        return {
            "missing": self.library_missing,
            "reader_error": self.reader_error,
            "reader_error_at": self.reader_error_at,
            "library_error": self.library_error.as_dict() if self.library_error else None,
            "read_stalled": self.read_stalled(),
            "without_persistent_id": self.without_persistent_id,
            "duplicate_ids": self.duplicate_ids,
            "held_removals": self.held_removals,
            "held_since": self.held_since,
        }

    def as_dict(self) -> dict[str, object]:
        """What `status` shows of the scans."""
        return {
            "last_scan_at": self.last_scan_at,
            "last_scan_duration_ms": self.last_scan_duration_ms,
            "last_scan_counts": self.last_counts,
            "scan_error": self.database_error,
            "scans": self.scans,
        }

    def read_stalled(self) -> dict[str, float] | None:
        """How long the current read has been running, once it is past its deadline."""
        if self.read_stalled_since is None:
            return None
        seconds = round(time.time() - self.read_stalled_since, 1)
        return {"since": self.read_stalled_since, "seconds": seconds}

    def read_succeeded(self, read: LibraryRead, path: Path) -> None:
        if self.reader_error or self.library_missing:
            log.info("library_readable_again", path=str(path))
        self.reader_error = None
        self.library_missing = False
        self.without_persistent_id = read.without_persistent_id
        self.duplicate_ids = read.duplicate_ids
        for warning in read.warnings:
            log.warning("library_warning", path=str(path), warning=warning.text)

    def read_failed(
        self, err: LibraryReadError, path: Path, *, errno: int | None, missing: bool
    ) -> None:
        """Note a failed read: `errno` is the OS error behind it, if any; `missing` whether
        the library is not there at all."""
        message = str(err)
        if missing or errno in _MISSING_ERRNOS:
            self.library_error = None
        elif errno is not None:
            self._note_library_error(errno, message, path)
        if isinstance(err, LibraryChangedDuringRead):
            log.warning(
                "library_busy",
                path=str(path),
                reason=message,
                hint="nothing was changed; it is read again once it stops changing",
            )
        elif missing:
            if not self.library_missing:
                log.warning(
                    "library_missing",
                    path=str(path),
                    hint="waiting for it to appear; check library.path in the config",
                )
            self.library_missing = True
        elif message != self.reader_error and not isinstance(err, LibraryReadStalled):
            log.error(
                "library_unreadable",
                path=str(path),
                reason=message,
                hint="nothing was changed; the next change to the file is scanned again",
            )
        self.reader_error = message
        self.reader_error_at = time.time()

    def scan_recorded(
        self, reason: str, *, at: float, duration_ms: float, counts: dict[str, int]
    ) -> None:
        self.last_scan_at = at
        self.last_scan_duration_ms = duration_ms
        self.last_scan_reason = reason
        self.scans += 1
        self.last_counts = counts

    def _note_library_error(self, number: int, message: str, path: Path) -> None:
        name = errno_name(number)
        previous = self.library_error
        if previous is not None and previous.errno == name and previous.message == message:
            return
        hint = describe_library_error(number, path, plist=installed_plist())
        self.library_error = LibraryError(errno=name, message=message, hint=hint, since=time.time())
        log.error(
            "library_access_failed",
            path=str(path),
            errno=name,
            error=os.strerror(number),
            hint=hint,
        )


@dataclass
class ScanOutcome:
    """What one scan did, as `rescan` answers it."""

    added: int = 0
    modified: int = 0
    removed: int = 0
    held_removals: int = 0
    ok: bool = True
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
