"""Incremental reader for the XML library: re-parse only the tracks whose bytes changed.

Music.app rewrites all of Library.xml (100-200 MB at 100k tracks) for any edit, and a full
expat parse of that costs seconds. Between two versions almost every track's `<dict>` is byte
for byte the same, so `FastXmlReader` keeps, from the previous read, a fingerprint of each
track entry's bytes and the `Track` parsed from them:

- The Tracks dict is cut into *entries* at each `</dict>` (an entry is the `<key>` with the
  track id, then the track's `<dict>` up to its `</dict>`). Consecutive entries form *runs* of
  up to `RUN_ENTRIES`, each also fingerprinted as a whole: an unchanged run costs one hash and
  one lookup, however its position moved, so a 150 MB file is scanned in about a tenth of a
  second with no per-line Python.
- An entry whose fingerprint was seen before reuses its `Track` (the very same object, which
  the differ then finds equal at once). A new entry is checked for the expected shape (no
  nested dict, comment, CDATA section or processing instruction) and parsed by the full
  reader's expat parser (`parse_library`) in a small document that holds only the new entries.
- The bytes before the first entry and after the Tracks dict are checked once per distinct
  version, by parsing them around a sentinel track: a truncated or malformed file, or a second
  Tracks dict, is still rejected. A file declaring entities (or any DOCTYPE internal subset) or
  another encoding than UTF-8 always goes to the full reader, which refuses or handles it.
- The tracks are assembled in file order with the full reader's identity rules: upper-cased
  Persistent IDs, fallback ids with "-2", "-3" suffixes, and the first of a repeated id wins,
  with the same counts and warnings.

Anything else falls back to `read_library_xml` on the file: the first read, a layout that is
not recognised, a change to more than half of the tracks, any entry that does not parse, and a
full read every `full_interval_seconds` (the periodic full comparison, which also logs
`fast_read_mismatch` if the incremental result ever differed from it). After a full read the
fingerprints are rebuilt from the same version of the file.

Fingerprints are Python's `hash()` of the bytes: SipHash-1-3 under the per-process random key,
at several GB/s. A wrong reuse needs two different entries to collide on 64 bits under a key an
attacker does not know. When `PYTHONHASHSEED` fixes that key, a keyed BLAKE2b with a random key
per reader is used instead (slower, same guarantee).

Cutting the file into entries and runs, the checks around them and parsing new entries live
in `daemon.library.xml_entries`; this module decides which path a read takes.
"""

from __future__ import annotations

import os
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import structlog

from daemon.library import FileStat, LibraryRead
from daemon.library.identity import TrackKeys
from daemon.library.xml_entries import (
    END,
    RUN_ENTRIES,
    Fingerprint,
    FullReadNeeded,
    Run,
    check_prefix,
    check_suffix,
    cut_entries,
    default_fingerprint,
    parse_entries,
)
from daemon.library.xml_reader import check_unchanged, read_library_xml
from daemon.models import Track

__all__ = ["RUN_ENTRIES", "FastXmlReader"]

log = structlog.get_logger(__name__)

# Above this share of new entries a full parse costs about as much, and verifies everything.
_MAX_NEW_SHARE: Final = 0.5
_MIN_NEW_FOR_FULL: Final = 64


@dataclass(slots=True)
class _Fingerprints:
    """The fingerprints of the last version read, and the tracks they stand for.

    Replaced as a whole, never half-updated.
    """

    tracks: dict[int, Track]  # entry fingerprint -> Track (a fallback id without suffix)
    without_id: set[int]  # fingerprints of entries without a Persistent ID
    runs: dict[bytes, Run]
    prefix: bytes
    suffix: int


class FastXmlReader:
    """A stateful reader for `library.source = "xml"`: call it for a `LibraryRead`.

    Same contract as `read_library_xml(path)`: the same tracks (same order, same fields), counts
    and warnings, the stat taken before the read, `LibraryReadError` for a bad file (from the
    full reader) and `LibraryChangedDuringRead` for a file that changed during the read. Only
    `full` differs: it is False for a read that took the fast path.
    Thread-safe: calls are serialised (the scanner may abandon a cancelled read's thread).
    """

    def __init__(
        self,
        path: Path,
        *,
        full_interval_seconds: float = 7 * 86400.0,
        clock: Callable[[], float] = time.monotonic,
        fingerprint: Fingerprint | None = None,
    ) -> None:
        self.path = path
        self.full_interval_seconds = full_interval_seconds
        self._clock = clock
        self._fp: Fingerprint = fingerprint or default_fingerprint()
        self._lock = threading.Lock()
        self._fingerprints: _Fingerprints | None = None
        self._adopted: Mapping[str, Track] | None = None
        self._last_full: float | None = None
        # What the last call did, for logs and benchmarks: "fast" or "full", and why.
        self.last_mode = ""
        self.last_reason = ""
        self.last_new_entries = 0

    def __call__(self) -> LibraryRead:
        with self._lock:
            return self._read()

    def forget(self) -> None:
        """Drop what earlier reads established: the next read is a full one."""
        with self._lock:
            self._fingerprints = None

    def adopt(self, tracks: Mapping[str, Track]) -> None:
        """Return these Track objects, not new equal ones, from the next full read.

        The daemon has its snapshot in memory before the first read: handed here, the snapshot,
        the scanner's baseline and this reader share one set of Track objects instead of two
        (about 80 MB at 100k tracks). Later full reads share with the previous read by
        themselves.
        """
        with self._lock:
            self._adopted = tracks

    # -- one read ------------------------------------------------------------------------

    def _read(self) -> LibraryRead:
        started = time.perf_counter()
        try:
            st = os.stat(self.path)
        except OSError:
            return self._full(None, None, "file not readable", started)
        if not stat_mod.S_ISREG(st.st_mode):
            return self._full(None, None, "not a regular file", started)
        before = FileStat(st.st_mtime_ns, st.st_size, st.st_ino)
        try:
            with open(self.path, "rb", buffering=0) as stream:
                data = stream.readall()
        except OSError:
            return self._full(None, None, "file not readable", started)
        check_unchanged(self.path, before)

        fingerprints = self._fingerprints
        if fingerprints is None:
            return self._full(data, before, "first read", started)
        due = (
            self._last_full is None or self._clock() - self._last_full >= self.full_interval_seconds
        )
        try:
            result, commit = self._fast(data, fingerprints)
        except FullReadNeeded as why:
            return self._full(data, before, str(why), started)
        if due:
            return self._full(data, before, "periodic full read", started, expected=result)
        result.stat = before
        result.full = False
        self._fingerprints = commit
        self._note("fast", "", started, len(result.tracks))
        return result

    def _full(
        self,
        data: bytes | None,
        before: FileStat | None,
        reason: str,
        started: float,
        *,
        expected: LibraryRead | None = None,
    ) -> LibraryRead:
        self.last_mode, self.last_reason, self.last_new_entries = "full", reason, 0
        # Equal tracks keep the objects the rest of the daemon already holds.
        previous = self._fingerprints
        reuse = self._adopted
        if previous is not None:
            reuse = {t.persistent_id: t for t in previous.tracks.values()}
        # A bad version leaves what is known as it was: fingerprints name bytes, not versions.
        result = read_library_xml(self.path, reuse=reuse)
        del reuse
        self._fingerprints = self._adopted = None
        self._last_full = self._clock()
        if expected is not None and not _same_read(expected, result):
            log.warning("fast_read_mismatch", path=str(self.path), tracks=len(result.tracks))
        if data is not None and result.stat == before:
            try:
                self._fingerprints = self._rebuild(data, result)
            except FullReadNeeded as why:
                log.info("fast_read_unavailable", path=str(self.path), reason=str(why))
        self._note("full", reason, started, len(result.tracks))
        return result

    def _note(self, mode: str, reason: str, started: float, tracks: int) -> None:
        self.last_mode, self.last_reason = mode, reason
        log.debug(
            "library_read",
            mode=mode,
            reason=reason or None,
            tracks=tracks,
            new_entries=self.last_new_entries,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    # -- the fast path -------------------------------------------------------------------

    def _fast(self, data: bytes, known: _Fingerprints) -> tuple[LibraryRead, _Fingerprints]:
        view = memoryview(data)
        layout = cut_entries(data, view, self._fp, known.tracks, known.runs)
        self.last_new_entries = len(layout.new)
        if len(layout.new) > max(_MIN_NEW_FOR_FULL, len(layout.entries) * _MAX_NEW_SHARE):
            raise FullReadNeeded(f"{len(layout.new)} of {len(layout.entries)} tracks changed")
        prefix = data[: layout.tracks_start]
        if prefix != known.prefix:
            check_prefix(prefix)
        suffix = self._fp(view[layout.tracks_end :])
        if suffix != known.suffix:
            check_suffix(view[layout.tracks_end :])
        tracks, without_id = known.tracks, known.without_id
        if layout.new:
            tracks, without_id = dict(tracks), set(without_id)
            for fingerprint, (track, has_id) in parse_entries(data, layout.new).items():
                tracks[fingerprint] = track
                if not has_id:
                    without_id.add(fingerprint)
        if len(tracks) > len(layout.entries) * 1.25 + RUN_ENTRIES:
            live = set(layout.entries)
            tracks = {f: t for f, t in tracks.items() if f in live}
            without_id = without_id & live
        result = _assemble(layout.entries, tracks, without_id)
        commit = _Fingerprints(
            tracks=tracks,
            without_id=without_id,
            runs={run.head: run for run in layout.runs},
            prefix=prefix,
            suffix=suffix,
        )
        return result, commit

    def _rebuild(self, data: bytes, result: LibraryRead) -> _Fingerprints:
        """Fingerprints for the version of the file `result` was fully parsed from."""
        view = memoryview(data)
        layout = cut_entries(data, view, self._fp, {}, {})
        tracks: dict[int, Track] = {}
        without_id: set[int] = set()
        parsed = list(result.tracks.values())
        # The usual case: one track per entry, in order. The entry must name its track's id.
        positional = (
            not result.without_persistent_id
            and not result.duplicate_ids
            and len(parsed) == len(layout.entries) == len(layout.new)
        )
        if positional:
            for fingerprint, track in zip(layout.entries, parsed, strict=True):
                start = layout.new[fingerprint]
                end = data.find(END, start)
                pid = track.persistent_id.encode()
                if data.find(pid, start, end) < 0 and pid not in data[start:end].upper():
                    positional = False
                    break
                tracks[fingerprint] = track
        if not positional:
            tracks.clear()
            for fingerprint, (track, has_id) in parse_entries(data, layout.new).items():
                tracks[fingerprint] = track
                if not has_id:
                    without_id.add(fingerprint)
            if not _same_read(_assemble(layout.entries, tracks, without_id), result):
                raise FullReadNeeded("entries parsed one by one differ from the full read")
            for fingerprint, track in tracks.items():
                same = result.tracks.get(track.persistent_id)
                if same is not None and same == track:
                    tracks[fingerprint] = same
        return _Fingerprints(
            tracks=tracks,
            without_id=without_id,
            runs={run.head: run for run in layout.runs},
            prefix=data[: layout.tracks_start],
            suffix=self._fp(view[layout.tracks_end :]),
        )


def _assemble(entries: list[int], known: dict[int, Track], without_id: set[int]) -> LibraryRead:
    """The tracks of the entries in order, with the full reader's identity rules."""
    found = list(map(known.__getitem__, entries))
    if not without_id or without_id.isdisjoint(entries):
        tracks = {t.persistent_id: t for t in found}
        if len(tracks) == len(found):
            return LibraryRead(tracks=tracks, stat=None, source="xml")
    keys = TrackKeys()
    for fingerprint, track in zip(entries, found, strict=True):
        pid = keys.claim(track.persistent_id, fallback=fingerprint in without_id)
        if pid is not None:
            # A fallback id is parsed without its suffix: add the one it got here.
            same = pid == track.persistent_id
            keys.tracks[pid] = track if same else replace(track, persistent_id=pid)
    return keys.read("xml")


def _same_read(a: LibraryRead, b: LibraryRead) -> bool:
    """The same tracks in the same order, counts and warnings (by their facts, not wording)."""
    return (
        _tracks_in_order(a) == _tracks_in_order(b)
        and [w.facts() for w in a.warnings] == [w.facts() for w in b.warnings]
        and a.without_persistent_id == b.without_persistent_id
        and a.duplicate_ids == b.duplicate_ids
    )


def _tracks_in_order(read: LibraryRead) -> list[tuple[str, Track]]:
    """(persistent id, track) in library order: two reads must agree on the order too."""
    return list(read.tracks.items())
