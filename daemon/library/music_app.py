"""Reader for `library.source = "music-app"`: the tracks straight from Music.app (macOS).

For people who never turned on "Share Library XML with other applications". The daemon
watches the `Music Library.musiclibrary` bundle and, on every change, asks Music.app itself
through `osascript -l JavaScript` running the script shipped as `daemon/data/music_library.js`.
That script fetches each kept field for all tracks in one Apple Event and prints one line of
JSON (its header documents the modes, the answer and how each value maps to the XML
reader's). This module runs it, validates the answer and builds `Track`s in library order.

Incremental reads: the first read, and one every `library.full_scan_interval_seconds`, fetches
every field ("full"). The others first fetch only `PROBE_FIELDS` of every track ("probe": 11
Apple Events instead of 17), compare them with the tracks of the previous read, and fetch
every field of only the new and changed tracks ("fetch", one `whose` clause). Editing a
track's tags usually moves its date modified; the fields that can change without it (the
checkbox, the kind, the class, which changes when a cloud track is downloaded) and the ones
edited most (name, artist, album artist, album) are in the probe themselves. More than
`MAX_FETCH` changed tracks are read in full instead. Each phase (probe, fetch, full) gets its
own `library.osascript_timeout_seconds`: a full read after a big import must not inherit only
what the probe left of one budget.

The read's `stat` is `library_stat(bundle)`, taken before the read: the newer of the bundle
directory's mtime and that of `Library.musicdb` inside it, which Music.app rewrites in place
without moving the directory's mtime. It is what the scanner's once-a-minute safety net
compares with `library.path`, so both must be taken the same way (a stat that never matched
would force a full Music.app read every minute). A read whose
tracks changed between two Apple Events is not trusted either: the script fetches the ids
first and last and says so when they differ (`LibraryChangedDuringRead`, the scanner retries).

Failures raise `LibraryReadError` with a one-line message that says what to do: the bundle is
missing, Music.app is not running (the script never launches it), Automation permission is
denied (-1743), osascript hangs (its whole process group is killed after
`library.osascript_timeout_seconds`), osascript is missing (not macOS), or the output is not
the expected JSON. An empty answer while Music.app counts tracks is an error, not a library
that lost every track. Running osascript and turning its failures into those messages is
`daemon.library.osascript`'s part.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final, get_type_hints

import orjson
import structlog

from daemon.errors import LibraryChangedDuringRead, LibraryReadError, describe_os_error
from daemon.library import (
    FileStat,
    LibraryRead,
    LibraryWarning,
    ReadProgress,
    WarningCode,
    library_stat,
)
from daemon.library.identity import TrackKeys, row_fallback_id
from daemon.library.osascript import describe_apple_event_error, run_osascript
from daemon.models import TRACK_FIELDS, Track
from daemon.paths import library_kind_matches

__all__ = [
    "MAX_FETCH",
    "PROBE_FIELDS",
    "SCRIPT_FORMAT",
    "MusicAppReader",
    # Re-exported: the doctor runs the script itself.
    "run_osascript",
]

log = structlog.get_logger(__name__)

SCRIPT_FORMAT: Final = "musicd/music-app/1"
# What the probe fetches (one Apple Event each). The date modified is "the modification date of
# the content": a tag edit that leaves it alone would go unseen until the weekly full read, so
# the fields users edit most are compared too.
PROBE_FIELDS: Final = (
    "persistent_id",
    "date_modified",
    "disabled",
    "kind",
    "track_type",
    "name",
    "artist",
    "album_artist",
    "album",
)
# Past this many new or changed tracks one full read is cheaper than a long `whose` clause
# (Music.app tests every track against every id in it, once per field).
MAX_FETCH: Final = 200
_SOURCE: Final = "music-app"

_NONE: Final[type] = type(None)
# What JSON may hold for a field of each annotated type.
_JSON_TYPES: Final[dict[object, frozenset[type]]] = {
    str | None: frozenset({str, _NONE}),
    int | None: frozenset({int, _NONE}),
    bool: frozenset({bool}),
}
# field -> the types its value may have, from Track's annotations. A track without a
# persistent id comes as null: it gets a fallback id.
_TYPES: Final[dict[str, frozenset[type]]] = {
    name: _JSON_TYPES[str | None if name == "persistent_id" else hint]
    for name, hint in get_type_hints(Track).items()
}
_PROBE_INDEX: Final = tuple(TRACK_FIELDS.index(f) for f in PROBE_FIELDS)


class MusicAppReader:
    """The `LibraryReader` for `library.source = "music-app"` (see the module docstring); keeps
    the last read to make the next one cheap."""

    def __init__(
        self,
        bundle: Path,
        *,
        timeout_seconds: float,
        full_scan_interval_seconds: float,
        rescan_command: str,
        incremental: bool = True,
    ) -> None:
        self.bundle = bundle
        self.rescan_command = rescan_command
        self.timeout_seconds = timeout_seconds
        self.full_scan_interval_seconds = full_scan_interval_seconds
        self.incremental = incremental
        self._tracks: dict[str, Track] | None = None
        self._last_full: float | None = None
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None

    def read(self, progress: ReadProgress | None = None) -> LibraryRead:
        """Read every track from Music.app (it answers in one piece: nothing to tell `progress`).

        Raises:
            LibraryReadError: the bundle is missing, Music.app is not running or refused,
                osascript is missing or hung, or its answer is not the expected JSON.
            LibraryChangedDuringRead: the library changed between two Apple Events.
        """
        with self._lock:
            stat = _bundle_stat(self.bundle)
            started = time.monotonic()
            if self._full_due():
                result, mode, fetched = self._read_full(), "full", None
            else:
                result, mode, fetched = self._read_incremental()
            self._tracks = result.tracks
            result.stat = stat
            log.debug(
                "music_app_read",
                mode=mode,
                tracks=len(result.tracks),
                fetched=len(result.tracks) if fetched is None else fetched,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
            return result

    def _full_due(self) -> bool:
        if not self.incremental or self._tracks is None or self._last_full is None:
            return True
        return time.monotonic() - self._last_full >= self.full_scan_interval_seconds

    def _read_full(self) -> LibraryRead:
        answer = _parse(self._run(["full"]), "full", self.rescan_command)
        result = _build(answer.rows, answer.warnings)
        self._last_full = time.monotonic()
        return result

    def _read_incremental(self) -> tuple[LibraryRead, str, int | None]:
        """Probe every track, then fetch only the new and changed ones (or all, when many)."""
        previous = self._tracks
        assert previous is not None
        probe = _parse(self._run(["probe"]), "probe", self.rescan_command)
        ids = [row[0] for row in probe.rows]
        if None in ids or len(set(ids)) != len(ids):
            # Odd libraries (tracks without ids, repeated ids) get the full read's handling.
            return self._read_full(), "full", None
        stale: list[str] = []
        for row in probe.rows:
            old = previous.get(row[0])
            if old is None or any(
                getattr(old, TRACK_FIELDS[i]) != value
                for i, value in zip(_PROBE_INDEX, row, strict=True)
            ):
                stale.append(row[0])
        if len(stale) > MAX_FETCH:
            return self._read_full(), "full", None
        fresh: dict[str, Track] = {}
        warnings = list(probe.warnings)
        if stale:
            answer = _parse(self._run(["fetch", *stale]), "fetch", self.rescan_command)
            fresh = {row[0]: Track(*row) for row in answer.rows}
            if len(answer.rows) != len(stale) or fresh.keys() != set(stale):
                # A track went away (or came back) between the probe and the fetch.
                raise LibraryChangedDuringRead(
                    "Music.app's library changed while it was being read; read it again"
                )
            warnings.extend(w for w in answer.warnings if w not in warnings)
        tracks = {pid: fresh[pid] if pid in fresh else previous[pid] for pid in ids}
        read = LibraryRead(
            tracks=tracks,
            stat=None,
            source=_SOURCE,
            warnings=_script_warnings(warnings),
            full=False,
        )
        return read, "incremental", len(stale)

    def _run(self, args: Sequence[str]) -> bytes:
        if self._cancelled.is_set():
            raise LibraryReadError("the read was stopped: musicd is shutting down")
        with resources.as_file(resources.files("daemon") / "data" / "music_library.js") as script:
            return run_osascript(
                script,
                args,
                self.timeout_seconds,
                self.timeout_seconds,
                rescan_command=self.rescan_command,
                on_start=self._started,
            )

    def _started(self, proc: subprocess.Popen[bytes] | None) -> None:
        self._proc = proc

    def forget(self) -> None:
        """Nothing to forget: every read hands back the whole library, compared in full."""

    def cancel(self) -> None:
        """Stop a read in progress (from another thread): kill osascript's process group."""
        self._cancelled.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _bundle_stat(bundle: Path) -> FileStat:
    try:
        st = os.stat(bundle)
    except FileNotFoundError:
        raise LibraryReadError(
            f"Music library bundle {bundle} does not exist; set library.path to your "
            "'Music Library.musiclibrary' (hold Option while opening Music.app to see it)"
        ) from None
    except OSError as err:
        raise LibraryReadError(
            f"Music library bundle {bundle} cannot be read: {describe_os_error(err)}",
            os_errno=err.errno,
        ) from None
    if not library_kind_matches(_SOURCE, st.st_mode):
        # e.g. a path still pointing at Library.xml after switching the source.
        raise LibraryReadError(
            f'library.path {bundle} is not a directory; with library.source = "music-app" '
            "it must be the 'Music Library.musiclibrary' bundle (or be left out)"
        )
    # The same stat the scanner's safety net takes (bundle and Library.musicdb together).
    try:
        combined = library_stat(bundle)
    except OSError as err:
        raise LibraryReadError(
            f"Music library bundle {bundle} cannot be read: {describe_os_error(err)}",
            os_errno=err.errno,
        ) from None
    return combined or FileStat(st.st_mtime_ns, st.st_size, st.st_ino)


class _Answer:
    __slots__ = ("rows", "warnings")

    def __init__(self, rows: list[list[Any]], warnings: list[str]) -> None:
        self.rows = rows
        self.warnings = warnings


def _bad(problem: str) -> LibraryReadError:
    return LibraryReadError(
        f"unexpected answer from osascript ({problem}); is 'osascript' on PATH Apple's "
        "/usr/bin/osascript, and does the installed musicd match its script?"
    )


def _parse(stdout: bytes, mode: str, rescan_command: str) -> _Answer:
    """Validate the script's JSON answer for `mode`; return its rows and warnings."""
    text = stdout.strip()
    if not text:
        raise _bad("it printed nothing")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _bad(f"not JSON: {text[:60].decode('utf-8', errors='replace')!r}") from None
    if not isinstance(data, dict) or data.get("format") != SCRIPT_FORMAT:
        raise _bad(f"not musicd's format {SCRIPT_FORMAT!r}")
    running = data.get("running")
    if running is False:
        raise LibraryReadError(
            "Music.app is not running; musicd reads the library from it but never starts it: "
            "open Music.app and the library is read on its next change"
        )
    if running is not True:
        raise _bad("no 'running' flag")
    error = data.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise _bad("a malformed error")
        number = error.get("number")
        message = error.get("message")
        raise LibraryReadError(
            describe_apple_event_error(
                number if type(number) is int else None,
                message if isinstance(message, str) else "unknown error",
                rescan_command,
            )
        )
    fields = PROBE_FIELDS if mode == "probe" else TRACK_FIELDS
    if data.get("mode") != mode or data.get("fields") != list(fields):
        raise _bad(f"not the fields of a {mode} read")
    count = data.get("count")
    consistent = data.get("consistent")
    rows = data.get("tracks")
    warnings = data.get("warnings")
    if type(count) is not int or count < 0 or type(consistent) is not bool:
        raise _bad("no track count")
    if not isinstance(rows, list):
        raise _bad("no track list")
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise _bad("malformed warnings")
    if not consistent:
        raise LibraryChangedDuringRead(
            "Music.app's library changed while it was being read; read it again"
        )
    _check_rows(rows, fields)
    if mode != "fetch":
        if count and not rows:
            raise LibraryReadError(
                f"Music.app counts {count} tracks but listed none; it may still be loading "
                "the library: it is read again on its next change"
            )
        if len(rows) != count:
            raise LibraryChangedDuringRead(
                "Music.app's library changed while it was being read; read it again"
            )
    return _Answer(rows, warnings)


def _check_rows(rows: list[Any], fields: Sequence[str]) -> None:
    if not rows:
        return
    width = len(fields)
    # Whole columns at a time, so the checks run in C: 100k tracks cost tens of milliseconds.
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
        n = next(n for n, r in enumerate(rows) if type(r) is not list or len(r) != width)
        raise _bad(f"track {n} is not a list of {width} values")
    for field, column in zip(fields, zip(*rows, strict=True), strict=True):
        allowed = _TYPES[field]
        if not set(map(type, column)) <= allowed:
            n, value = next((n, v) for n, v in enumerate(column) if type(v) not in allowed)
            raise _bad(f"track {n} has {field} = {str(value)[:40]!r}")


def _script_warnings(texts: list[str]) -> list[LibraryWarning]:
    return [LibraryWarning(WarningCode.MUSIC_APP, text) for text in texts]


def _build(rows: list[list[Any]], warnings: list[str]) -> LibraryRead:
    """Tracks in library order by the identity rules (the script upper-cased the ids)."""
    keys = TrackKeys()
    claim, tracks = keys.claim, keys.tracks
    for row in rows:
        pid = row[0]
        if pid is None:
            pid = claim(row_fallback_id(row), fallback=True)
            row = [pid, *row[1:]]
        elif claim(pid, fallback=False) is None:
            continue
        tracks[pid] = Track(*row)
    return keys.read(_SOURCE, warnings=_script_warnings(warnings))
