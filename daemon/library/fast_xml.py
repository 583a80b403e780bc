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
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import structlog

from daemon.errors import LibraryReadError
from daemon.library import FileStat, LibraryRead
from daemon.library.identity import TrackKeys
from daemon.library.xml_reader import check_unchanged, parse_library, read_library_xml
from daemon.models import Track

__all__ = ["RUN_ENTRIES", "FastXmlReader"]

log = structlog.get_logger(__name__)

# Entries per run: big enough that a run check is one long hash, small enough that a changed
# run costs little to walk entry by entry.
RUN_ENTRIES: Final = 256
# Above this share of new entries a full parse costs about as much, and verifies everything.
_MAX_NEW_SHARE: Final = 0.5
_MIN_NEW_FOR_FULL: Final = 64

_END: Final = b"</dict>"
_END_LEN: Final = len(_END)
_TRACKS = re.compile(rb"<key>Tracks</key>[ \t\r\n]*<dict>")
# The start of an entry: optional XML white space, the track id key, the track's <dict>.
_HEAD = re.compile(rb"[ \t\r\n]*<key>[^<]*</key>[ \t\r\n]*<dict>")
_BLANK = re.compile(rb"[ \t\r\n]*")
_DECLARED_ENCODING = re.compile(rb"(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*[\"']([^\"']*)")
# Inside a track these would make the cut at `</dict>` or the entry's fingerprint meaningless.
_NOT_IN_ENTRY: Final = (b"<dict", b"<!", b"<?")

_SENTINEL_ID: Final = "FA57C0DE5E7711E1"
_SENTINEL: Final = (
    b"<key>0</key><dict><key>Persistent ID</key><string>"
    + _SENTINEL_ID.encode()
    + b"</string></dict>"
)
_DOC_HEAD: Final = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict><key>Tracks</key><dict>'
)
_DOC_TAIL: Final = b"</dict></dict></plist>"

Fingerprint = Callable[[memoryview], int]


def _keyed_fingerprint() -> Fingerprint:
    key = secrets.token_bytes(16)

    def fingerprint(data: memoryview) -> int:
        digest = hashlib.blake2b(data, digest_size=8, key=key).digest()
        return int.from_bytes(digest, "little", signed=True)

    return fingerprint


def _default_fingerprint() -> Fingerprint:
    if os.environ.get("PYTHONHASHSEED", "random") in ("", "random"):
        return hash
    return _keyed_fingerprint()


class _Fallback(Exception):
    """The fast path cannot vouch for this version of the file; read it in full."""


@dataclass(slots=True)
class _Run:
    """Consecutive entries, found again by the bytes of the first one's head."""

    head: bytes
    length: int
    fingerprint: int
    entries: list[int]


@dataclass(slots=True)
class _Layout:
    """Where the entries of one version of the file are, and which of them are new."""

    tracks_start: int
    tracks_end: int  # where the `</dict>` that closes the Tracks dict starts
    entries: list[int] = field(default_factory=list)
    new: dict[int, int] = field(default_factory=dict)  # fingerprint -> where the entry starts
    runs: list[_Run] = field(default_factory=list)


@dataclass(slots=True)
class _Fingerprints:
    """The fingerprints of the last version read, and the tracks they stand for.

    Replaced as a whole, never half-updated.
    """

    tracks: dict[int, Track]  # entry fingerprint -> Track (a fallback id without suffix)
    without_id: set[int]  # fingerprints of entries without a Persistent ID
    runs: dict[bytes, _Run]
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
        self._fp: Fingerprint = fingerprint or _default_fingerprint()
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
        except _Fallback as why:
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
            except _Fallback as why:
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
        layout = self._layout(data, view, known.tracks, known.runs)
        self.last_new_entries = len(layout.new)
        if len(layout.new) > max(_MIN_NEW_FOR_FULL, len(layout.entries) * _MAX_NEW_SHARE):
            raise _Fallback(f"{len(layout.new)} of {len(layout.entries)} tracks changed")
        prefix = data[: layout.tracks_start]
        if prefix != known.prefix:
            _check_prefix(prefix)
        suffix = self._fp(view[layout.tracks_end :])
        if suffix != known.suffix:
            _check_suffix(view[layout.tracks_end :])
        tracks, without_id = known.tracks, known.without_id
        if layout.new:
            tracks, without_id = dict(tracks), set(without_id)
            for fingerprint, (track, has_id) in _parse_entries(data, layout.new).items():
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
        layout = self._layout(data, view, {}, {})
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
                end = data.find(_END, start)
                pid = track.persistent_id.encode()
                if data.find(pid, start, end) < 0 and pid not in data[start:end].upper():
                    positional = False
                    break
                tracks[fingerprint] = track
        if not positional:
            tracks.clear()
            for fingerprint, (track, has_id) in _parse_entries(data, layout.new).items():
                tracks[fingerprint] = track
                if not has_id:
                    without_id.add(fingerprint)
            if not _same_read(_assemble(layout.entries, tracks, without_id), result):
                raise _Fallback("entries parsed one by one differ from the full read")
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

    def _layout(
        self,
        data: bytes,
        view: memoryview,
        known: dict[int, Track],
        runs: dict[bytes, _Run],
    ) -> _Layout:
        """Cut the Tracks dict into entries: known runs whole, everything else entry by entry."""
        match = _TRACKS.search(data)
        if match is None:
            raise _Fallback("no Tracks dict found")
        start = match.end()
        layout = _Layout(tracks_start=start, tracks_end=-1)
        entries, new = layout.entries, layout.new
        fp, find, size = self._fp, data.find, len(data)
        # The run being made of entries read one by one (no per-entry records: at 100k tracks
        # they would be megabytes of short-lived objects interleaved with long-lived ones).
        run_fps: list[int] = []
        run_start = run_head_end = run_stop = 0
        pos = start
        while True:
            end = find(_END, pos)
            if end < 0:
                raise _Fallback("the Tracks dict does not end")
            head = _HEAD.match(data, pos, end)
            if head is None:
                if _BLANK.fullmatch(data, pos, end):
                    layout.tracks_end = end
                    break
                raise _Fallback("unexpected content in the Tracks dict")
            head_end = head.end()
            run = runs.get(data[pos:head_end])
            if (
                run is not None
                and pos + run.length <= size
                and fp(view[pos : pos + run.length]) == run.fingerprint
            ):
                if run_fps:
                    self._add_run(view, data, run_start, run_head_end, run_stop, run_fps, layout)
                    run_fps = []
                entries.extend(run.entries)
                layout.runs.append(run)
                pos += run.length
                continue
            fingerprint = fp(view[pos:end])
            if fingerprint not in known and fingerprint not in new:
                for marker in _NOT_IN_ENTRY:
                    if find(marker, head_end, end) >= 0:
                        raise _Fallback("a track holds a nested dict, comment or CDATA")
                new[fingerprint] = pos
            entries.append(fingerprint)
            if not run_fps:
                run_start, run_head_end = pos, head_end
            run_fps.append(fingerprint)
            pos = run_stop = end + _END_LEN
            if len(run_fps) == RUN_ENTRIES:
                self._add_run(view, data, run_start, run_head_end, run_stop, run_fps, layout)
                run_fps = []
        if run_fps:
            self._add_run(view, data, run_start, run_head_end, run_stop, run_fps, layout)
        return layout

    def _add_run(
        self,
        view: memoryview,
        data: bytes,
        start: int,
        head_end: int,
        stop: int,
        fps: list[int],
        layout: _Layout,
    ) -> None:
        fingerprint = self._fp(view[start:stop])
        layout.runs.append(_Run(data[start:head_end], stop - start, fingerprint, fps))


# -- checks and parsing, shared by both paths ---------------------------------------------


def _only_sentinel(document: bytes) -> bool:
    try:
        read = parse_library(io.BytesIO(document))
    except LibraryReadError:
        return False
    return list(read.tracks) == [_SENTINEL_ID] and not read.warnings


def _check_prefix(prefix: bytes) -> None:
    """The bytes before the first entry open the plist, its top dict and the Tracks dict."""
    declared = _DECLARED_ENCODING.match(prefix)
    if declared is not None and declared.group(1).lower() != b"utf-8":
        raise _Fallback("the file is not declared as UTF-8")
    doctype = prefix.find(b"<!DOCTYPE")
    if b"<!ENTITY" in prefix or (doctype >= 0 and b"[" in prefix[doctype:]):
        raise _Fallback("the file has a DOCTYPE internal subset")
    if not _only_sentinel(prefix + _SENTINEL + _DOC_TAIL):
        raise _Fallback("the start of the file is not a plain library header")


def _check_suffix(suffix: memoryview) -> None:
    """The bytes from the Tracks dict's `</dict>` on close the document properly."""
    if not _only_sentinel(_DOC_HEAD + _SENTINEL + suffix.tobytes()):
        raise _Fallback("the end of the file is not well-formed or holds more tracks")


def _parse_entries(data: bytes, new: dict[int, int]) -> dict[int, tuple[Track, bool]]:
    """Parse new entries with the full reader: fingerprint -> (Track, had a Persistent ID).

    Entries go in batches; a batch whose tracks cannot be matched one to one with its entries
    (a missing or repeated Persistent ID) is split until they can.
    """
    parsed: dict[int, tuple[Track, bool]] = {}
    pending = list(new.items())
    for i in range(0, len(pending), 4096):
        _parse_batch(data, pending[i : i + 4096], parsed)
    return parsed


def _parse_batch(
    data: bytes, items: list[tuple[int, int]], parsed: dict[int, tuple[Track, bool]]
) -> None:
    # A plain recursive function, not a closure: a closure that calls itself is a reference
    # cycle, and it would keep the whole file's bytes alive until the next collection.
    find = data.find
    entries = (data[s : find(_END, s) + _END_LEN] for _, s in items)
    document = b"".join([_DOC_HEAD, *entries, _DOC_TAIL])
    try:
        read = parse_library(io.BytesIO(document))
    except LibraryReadError as err:
        raise _Fallback(f"a changed track does not parse: {err}") from None
    tracks = list(read.tracks.values())
    if not read.without_persistent_id and len(tracks) == len(items):
        for (fingerprint, _), track in zip(items, tracks, strict=True):
            parsed[fingerprint] = (track, True)
    elif len(items) == 1:
        parsed[items[0][0]] = (tracks[0], not read.without_persistent_id)
    else:
        half = len(items) // 2
        _parse_batch(data, items[:half], parsed)
        _parse_batch(data, items[half:], parsed)


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
