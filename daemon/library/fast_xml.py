"""Incremental reader for the XML library: re-parse only the tracks whose bytes changed.

Music.app rewrites all of Library.xml (100-200 MB at 100k tracks) for any edit, and a full
expat parse of that costs seconds. Between two versions almost every track's `<dict>` is byte
for byte the same, so `FastXmlReader` keeps, from the previous read, a fingerprint of each
track entry's bytes and the Persistent ID it stands for, and hands back only what changed:

- The Tracks dict is cut into *entries* at each `</dict>` (an entry is the `<key>` with the
  track id, then the track's `<dict>` up to its `</dict>`). Consecutive entries form *runs* of
  up to `RUN_ENTRIES`, each also fingerprinted as a whole: an unchanged run costs one hash and
  one lookup, however its position moved: a 150 MB file costs about 50 ms, no per-line Python.
- The file is read a chunk at a time through one reused buffer (`daemon.library.file_window`)
  and cut as it goes: a read holds a few MiB of it, never all of it.
- What is kept between reads costs bytes, not objects: the fingerprints and Persistent IDs (as
  64-bit numbers) in sorted `array`s, looked up by bisection, and each run's fingerprints in an
  `array` (about 32 bytes a track in all). No `Track` is held: the database has them.
- An entry whose fingerprint is new is checked for the expected shape (no nested dict,
  comment, CDATA section or processing instruction) and parsed by the full reader's expat
  parser (`parse_library`) in a small document that holds only the new entries. An entry of
  the previous version that is not found again names a track that changed or is gone.
- The bytes before the first entry and after the Tracks dict are checked once per distinct
  version, by parsing them around a sentinel track: a truncated or malformed file, or a second
  Tracks dict, is still rejected. A file declaring entities (or any DOCTYPE internal subset) or
  another encoding than UTF-8 always goes to the full reader, which refuses or handles it.

The fast read is a `LibraryRead` with `gone` set: `tracks` holds the tracks of the new
entries, `gone` the keys whose entries went without a successor. It takes the fast path only
for a library whose every track has its own Persistent ID of 16 hex digits (every library
Music.app or iTunes 7 and later writes); tracks without one or repeated ids make their
versions read in full, as does the first read, a layout that is not recognised, a change to
more than half of the tracks (known or read), any entry that does not parse, and a full read every
`full_interval_seconds` (the periodic full comparison, which also logs `fast_read_mismatch` if
what the fast path kept ever differed from what the full read finds). After a full read the
fingerprints are rebuilt by reading the file again, which must still be the version parsed.

Fingerprints are Python's `hash()` of the bytes: SipHash-1-3 under the per-process random key,
at several GB/s. A wrong reuse needs two different entries to collide on 64 bits under a key an
attacker does not know. When `PYTHONHASHSEED` fixes that key, a keyed BLAKE2b with a random key
per reader is used instead (slower, same guarantee). Cutting the file into entries and runs,
the checks around them and parsing new entries live in `daemon.library.xml_entries`.
"""

from __future__ import annotations

import io
import operator
import os
import stat as stat_mod
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import structlog

from daemon.library import FileStat, KnownTracks, LibraryRead, ReadProgress, SnapshotBuild
from daemon.library.file_window import CHUNK_SIZE, Window
from daemon.library.keys import hex16_key, hex16_number
from daemon.library.xml_entries import (
    RUN_ENTRIES,
    Fingerprint,
    FullReadNeeded,
    Run,
    check_prefix,
    check_suffix,
    cut_entries,
    cut_paired,
    default_fingerprint,
    parse_entries,
)
from daemon.library.xml_reader import (
    check_unchanged,
    read_compared,
    read_library_xml,
    read_streamed,
)
from daemon.models import Track

__all__ = ["RUN_ENTRIES", "FastXmlReader"]

log = structlog.get_logger(__name__)

# Above this share of new entries a full parse costs about as much, and verifies everything.
_MAX_NEW_SHARE: Final = 0.5
_MIN_NEW_FOR_FULL: Final = 64
# Up to this many changes the sorted arrays are edited in place (a memmove each), beyond it
# rebuilt by one sort.
_EDITS_IN_PLACE: Final = 64


def _find(values: array[int], value: int) -> int:
    """The index of `value` in the sorted `values`, or -1."""
    i = bisect_left(values, value)
    return i if i < len(values) and values[i] == value else -1


@dataclass(frozen=True, slots=True)
class _SortedSet:
    """`in` for a sorted array, for `cut_entries`."""

    values: array[int]

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and _find(self.values, value) >= 0


@dataclass(slots=True)
class _Known:
    """What the last version read leaves for the next read: arrays, not objects.

    Replaced as a whole, never half-updated. Its fingerprints and Persistent IDs are each
    distinct (a version where they are not is read in full).
    """

    fps: array[int]  # 'q': every entry's fingerprint, sorted
    pids: array[int]  # 'Q': the Persistent ID (as a number) of the entry at the same index
    ids: array[int]  # 'Q': every Persistent ID, sorted
    runs: dict[bytes, Run]  # by the bytes of their first entry's head
    all_runs: list[Run]  # every run of the version, a run another one's head hides included
    prefix: bytes
    suffix: int

    def same_tracks(self, other: _Known) -> bool:
        return self.fps == other.fps and self.pids == other.pids


def _sorted_pairs(fps: Iterable[int], pids: Iterable[int]) -> tuple[array[int], array[int]]:
    pairs = sorted(zip(fps, pids, strict=True))
    return array("q", [f for f, _ in pairs]), array("Q", [p for _, p in pairs])


def _edited(
    fps: array[int], pids: array[int], remove: set[int], add: list[tuple[int, int]]
) -> tuple[array[int], array[int]]:
    """Copies of the parallel sorted arrays without the fingerprints `remove`, with `add`."""
    if len(remove) + len(add) > _EDITS_IN_PLACE:
        kept = [(f, p) for f, p in zip(fps, pids, strict=True) if f not in remove]
        kept += add
        return _sorted_pairs((f for f, _ in kept), (p for _, p in kept))
    fps, pids = array("q", fps), array("Q", pids)
    for fingerprint in remove:
        i = _find(fps, fingerprint)
        del fps[i], pids[i]
    for fingerprint, pid in add:
        i = bisect_left(fps, fingerprint)
        fps.insert(i, fingerprint)
        pids.insert(i, pid)
    return fps, pids


def _edited_ids(ids: array[int], remove: set[int], add: set[int]) -> array[int]:
    if len(remove) + len(add) > _EDITS_IN_PLACE:
        return array("Q", sorted({*ids} - remove | add))
    ids = array("Q", ids)
    for pid in remove:
        del ids[_find(ids, pid)]
    for pid in add:
        ids.insert(bisect_left(ids, pid), pid)
    return ids


class FastXmlReader:
    """The `LibraryReader` for `library.source = "xml"`; it keeps state between reads.

    Same contract as `read_library_xml(path)` for a full read: the same tracks (same order,
    same fields), counts and warnings, the stat taken before the read, `LibraryReadError` for
    a bad file (from the full reader) and `LibraryChangedDuringRead` for a file that changed
    during the read. A read that took the fast path has `full` False and `gone` set: it holds
    only what changed since the read before it. While `build` (the daemon's build of its
    snapshot) is due, a full read streams into it instead (`SnapshotBuild`).
    Thread-safe: calls are serialised (the scanner may abandon a cancelled read's thread).
    """

    def __init__(
        self,
        path: Path,
        *,
        full_interval_seconds: float = 7 * 86400.0,
        clock: Callable[[], float] = time.monotonic,
        fingerprint: Fingerprint | None = None,
        snapshot: KnownTracks | None = None,
        build: SnapshotBuild | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.snapshot = snapshot
        self.build = build
        self.full_interval_seconds = full_interval_seconds
        self._clock = clock
        self._fp: Fingerprint = fingerprint or default_fingerprint()
        self._lock = threading.Lock()
        self._known: _Known | None = None
        self._last_full: float | None = None
        # What the last call did, for logs and benchmarks: "fast" or "full", and why.
        self.last_mode = ""
        self.last_reason = ""
        self.last_new_entries = 0

    def read(self, progress: ReadProgress | None = None) -> LibraryRead:
        """Read the library; a full read tells `progress` how far it got."""
        with self._lock:
            return self._read(progress)

    def forget(self) -> None:
        """Drop what earlier reads established: the next read is a full one."""
        with self._lock:
            self._known = None

    def cancel(self) -> None:
        """Nothing to stop: a blocked read of a file cannot be interrupted (it is left behind)."""

    # -- one read ------------------------------------------------------------------------

    def _read(self, progress: ReadProgress | None) -> LibraryRead:
        started = time.perf_counter()
        full = partial(self._full, started=started, progress=progress)
        try:
            st = os.stat(self.path)
        except OSError:
            return full(None, "file not readable")
        if not stat_mod.S_ISREG(st.st_mode):
            return full(None, "not a regular file")
        before = FileStat(st.st_mtime_ns, st.st_size, st.st_ino)
        known = self._known
        if known is None:
            return full(before, "first read")
        due = (
            self._last_full is None or self._clock() - self._last_full >= self.full_interval_seconds
        )
        why_full = ""
        try:
            with open(self.path, "rb", buffering=0) as stream:
                try:
                    result, commit = self._fast(stream, known)
                except FullReadNeeded as why:
                    why_full = str(why)  # not the exception: its frames hold the buffer
        except OSError:
            return full(None, "file not readable")
        # What the read saw is one version of the file only if it did not change meanwhile.
        check_unchanged(self.path, before)
        if why_full:
            return full(before, why_full)
        if due:
            return full(before, "periodic full read", expected=commit)
        result.stat = before
        result.full = False
        self._known = commit
        self._note("fast", "", started, result.track_count)
        return result

    def _full(
        self,
        before: FileStat | None,
        reason: str,
        *,
        started: float,
        progress: ReadProgress | None,
        expected: _Known | None = None,
    ) -> LibraryRead:
        self.last_mode, self.last_reason, self.last_new_entries = "full", reason, 0
        # A bad version leaves what is known as it was: fingerprints name bytes, not versions.
        order: Collection[str]
        sink = self.build.begin() if self.build is not None else None
        if sink is not None:
            result, order = read_streamed(self.path, sink, progress=progress)
        elif self.snapshot is None:
            result = read_library_xml(self.path, progress=progress)
            order = result.tracks
        else:
            result, order = read_compared(self.path, self.snapshot, progress=progress)
        self._known = None
        self._last_full = self._clock()
        if before is not None and result.stat == before:
            try:
                self._known = self._rebuild(result, order)
            except FullReadNeeded as why:
                log.info("fast_read_unavailable", path=str(self.path), reason=str(why))
        if expected is not None and not (self._known and self._known.same_tracks(expected)):
            log.warning("fast_read_mismatch", path=str(self.path), tracks=result.count())
        self._note("full", reason, started, result.count())
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

    def _fast(self, stream: io.RawIOBase, known: _Known) -> tuple[LibraryRead, _Known]:
        # Past this many new entries a full read follows whatever the rest holds: stopping
        # there keeps a version where everything changed from being copied out entry by entry.
        limit = max(_MIN_NEW_FOR_FULL, int(len(known.fps) * _MAX_NEW_SHARE))
        new: dict[int, bytes] = {}

        def keep(fingerprint: int, entry: bytes) -> None:
            if len(new) == limit and fingerprint not in new:
                raise FullReadNeeded(f"more than {limit} of {len(known.fps)} tracks changed")
            new.setdefault(fingerprint, entry)

        window = Window(stream, self.chunk_size)
        layout = cut_entries(window, self._fp, _SortedSet(known.fps), known.runs, keep)
        self.last_new_entries = len(new)
        if len(new) > max(_MIN_NEW_FOR_FULL, len(layout.entries) * _MAX_NEW_SHARE):
            raise FullReadNeeded(f"{len(new)} of {len(layout.entries)} tracks changed")
        if layout.prefix != known.prefix:
            check_prefix(layout.prefix)
        if layout.suffix != known.suffix:
            check_suffix(stream, layout.tracks_end)

        # The entries of the previous version's runs not found again are the only ones that
        # can be gone; the entries cut one by one are the only ones that can be new or moved.
        matched = {id(run) for run in layout.matched}
        if len(matched) != len(layout.matched):
            raise FullReadNeeded("a run of entries repeats")
        unmatched: set[int] = set()
        for run in known.all_runs:
            if id(run) not in matched:
                unmatched.update(run.entries)
        loose = set(layout.loose)
        if len(loose) != len(layout.loose):
            raise FullReadNeeded("an entry repeats")
        for fingerprint in loose:
            if fingerprint not in new and fingerprint not in unmatched:
                raise FullReadNeeded("an entry repeats")  # it is in a run found again too
        gone_fps = unmatched - loose
        gone_pids = {known.pids[_find(known.fps, f)] for f in gone_fps}

        changed: dict[str, Track] = {}
        added: list[tuple[int, int]] = []
        for fingerprint, (track, has_id) in parse_entries(new).items():
            pid = hex16_number(track.persistent_id) if has_id else None
            if pid is None:
                raise FullReadNeeded("a track has no Persistent ID of 16 hex digits")
            if track.persistent_id in changed or (
                pid not in gone_pids and _find(known.ids, pid) >= 0
            ):
                raise FullReadNeeded("a Persistent ID repeats")
            changed[track.persistent_id] = track
            added.append((fingerprint, pid))
        new_pids = {pid for _, pid in added}
        fps, pids = _edited(known.fps, known.pids, gone_fps, added)
        commit = _Known(
            fps=fps,
            pids=pids,
            ids=_edited_ids(known.ids, gone_pids - new_pids, new_pids - gone_pids),
            runs={run.head: run for run in layout.runs},
            all_runs=layout.runs,
            prefix=layout.prefix,
            suffix=layout.suffix,
        )
        result = LibraryRead(
            tracks=changed,
            stat=None,
            source="xml",
            gone=sorted(hex16_key(pid) for pid in gone_pids - new_pids),
            track_count=len(layout.entries),
        )
        return result, commit

    def _rebuild(self, result: LibraryRead, order: Collection[str]) -> _Known:
        """Fingerprints for the version of the file `result` was fully parsed from, whose keys
        were `order`, in file order: the file is read again, and must still be that version."""
        if result.without_persistent_id or result.duplicate_ids:
            raise FullReadNeeded("tracks without a Persistent ID or with a repeated one")
        layout, pids = cut_paired(self.path, result.stat, order, self._fp, self.chunk_size)
        fps, by_fp = _sorted_pairs(layout.entries, pids)
        if any(map(operator.eq, fps, fps[1:])):
            raise FullReadNeeded("entries and tracks do not pair up")  # an entry repeats
        return _Known(
            fps=fps,
            pids=by_fp,
            ids=array("Q", sorted(pids)),
            runs={run.head: run for run in layout.runs},
            all_runs=layout.runs,
            prefix=layout.prefix,
            suffix=layout.suffix,
        )
