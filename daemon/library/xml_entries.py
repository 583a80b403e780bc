"""Cut the Tracks dict of an XML library into fingerprinted entries, for `FastXmlReader`.

An *entry* is the `<key>` with a track id, then the track's `<dict>` up to its `</dict>`;
consecutive entries form *runs* of up to `RUN_ENTRIES`, each also fingerprinted as a whole so
that an unchanged run is found again with one hash. This module finds the entries and runs of
one version of the file as it reads it through a `Window` (a chunk at a time, never the whole
file), checks the bytes around the Tracks dict, and parses new entries with the full reader's
parser. Whatever it cannot vouch for raises `FullReadNeeded`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
from array import array
from collections.abc import Callable, Collection, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from daemon.errors import LibraryReadError
from daemon.library import FileStat
from daemon.library.file_window import Window
from daemon.library.keys import hex16_number
from daemon.library.xml_reader import parse_library
from daemon.models import Track

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "END",
    "RUN_ENTRIES",
    "Fingerprint",
    "FullReadNeeded",
    "Layout",
    "Run",
    "check_prefix",
    "check_suffix",
    "cut_entries",
    "cut_paired",
    "default_fingerprint",
    "keyed_fingerprint",
    "parse_entries",
]

# Entries per run: big enough that a run check is one long hash, small enough that a changed
# run costs little to walk entry by entry.
RUN_ENTRIES: Final = 256
# Where each entry ends (a track holds no nested dict, or the fast path is not taken).
END: Final = b"</dict>"
_END_LEN: Final = len(END)
_TRACKS = re.compile(rb"<key>Tracks</key>[ \t\r\n]*<dict>")
# The start of an entry: optional XML white space, the track id key, the track's <dict>.
_HEAD = re.compile(rb"[ \t\r\n]*<key>[^<]*</key>[ \t\r\n]*<dict>")
_BLANK = re.compile(rb"[ \t\r\n]*")
# Music.app's header before the Tracks dict is a few hundred bytes: past this, the layout is
# not one the fast path knows, and reading on to find it could hold the whole file.
_MAX_PREFIX: Final = 1 << 20
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


def keyed_fingerprint() -> Fingerprint:
    """BLAKE2b under a random key: for when PYTHONHASHSEED makes `hash()` predictable."""
    key = secrets.token_bytes(16)

    def fingerprint(data: memoryview) -> int:
        digest = hashlib.blake2b(data, digest_size=8, key=key).digest()
        return int.from_bytes(digest, "little", signed=True)

    return fingerprint


def _hash_of_copy(data: memoryview) -> int:
    """`hash()` of the bytes: SipHash-1-3 under the per-process random key.

    `hash()` refuses a view of a `bytearray` (an unhashable object), and the window's buffer is
    one, so the bytes are copied first: from the CPU's cache, a fraction of the hash's cost.
    """
    return hash(data.tobytes())


def default_fingerprint() -> Fingerprint:
    """`hash()` (SipHash under the per-process random key) unless PYTHONHASHSEED fixed it."""
    if os.environ.get("PYTHONHASHSEED", "random") in ("", "random"):
        return _hash_of_copy
    return keyed_fingerprint()


class FullReadNeeded(Exception):
    """The fast path cannot vouch for this version of the file; read it in full."""


@dataclass(slots=True)
class Run:
    """Consecutive entries, found again by the bytes of the first one's head."""

    head: bytes
    length: int
    fingerprint: int
    entries: array[int]  # 'q': 8 bytes an entry, not an int object each


@dataclass(slots=True)
class Layout:
    """The entries of one version of the file, and the bytes around them."""

    prefix: bytes  # everything before the first entry
    tracks_end: int  # where the `</dict>` that closes the Tracks dict starts
    suffix: int = 0  # the fingerprint of everything from `tracks_end` on
    entries: array[int] = field(default_factory=lambda: array("q"))
    runs: list[Run] = field(default_factory=list)
    # The runs of the previous version found again, and the entries cut one by one.
    matched: list[Run] = field(default_factory=list)
    loose: array[int] = field(default_factory=lambda: array("q"))


def cut_entries(
    window: Window,
    fp: Fingerprint,
    known: Container[int],
    runs: dict[bytes, Run],
    new_entry: Callable[[int, bytes], None],
) -> Layout:
    """Cut the Tracks dict into entries: known runs whole, everything else entry by entry.

    `known` holds the fingerprints of entries already parsed, `runs` the runs of the previous
    version by the bytes of their first entry's head. Each entry cut one by one whose
    fingerprint is not in `known` goes to `new_entry`, with its bytes up to its `</dict>`, in
    file order (an entry that repeats goes each time). The window moves on as the entries are
    cut: it holds a run, or the entries of the run being made, never the file.
    """
    start = _tracks_start(window)
    layout = Layout(prefix=window.copy(0, start), tracks_end=-1)
    entries = layout.entries
    # The run being made of entries read one by one (no per-entry records: at 100k tracks
    # they would be megabytes of short-lived objects interleaved with long-lived ones).
    run_fps: list[int] = []
    run_start = run_head_end = run_stop = 0
    pos = start
    while True:
        keep = run_start if run_fps else pos
        end = window.find(END, pos, keep)
        if end < 0:
            raise FullReadNeeded("the Tracks dict does not end")
        head_end = window.match_end(_HEAD, pos, end)
        if head_end < 0:
            if window.match_end(_BLANK, pos, end) == end:
                layout.tracks_end = end
                break
            raise FullReadNeeded("unexpected content in the Tracks dict")
        run = runs.get(window.copy(pos, head_end))
        if (
            run is not None
            and window.ensure(pos + run.length, keep)
            and fp(window.view(pos, pos + run.length)) == run.fingerprint
        ):
            if run_fps:
                _add_run(fp, window, run_start, run_head_end, run_stop, run_fps, layout)
                run_fps = []
            entries.extend(run.entries)
            layout.runs.append(run)
            layout.matched.append(run)
            pos += run.length
            continue
        fingerprint = fp(window.view(pos, end))
        if fingerprint not in known:
            entry = window.copy(pos, end + _END_LEN)
            for marker in _NOT_IN_ENTRY:
                if entry.find(marker, head_end - pos, end - pos) >= 0:
                    raise FullReadNeeded("a track holds a nested dict, comment or CDATA")
            new_entry(fingerprint, entry)
        entries.append(fingerprint)
        layout.loose.append(fingerprint)
        if not run_fps:
            run_start, run_head_end = pos, head_end
        run_fps.append(fingerprint)
        pos = run_stop = end + _END_LEN
        if len(run_fps) == RUN_ENTRIES:
            _add_run(fp, window, run_start, run_head_end, run_stop, run_fps, layout)
            run_fps = []
    if run_fps:
        _add_run(fp, window, run_start, run_head_end, run_stop, run_fps, layout)
    layout.suffix = _suffix_fingerprint(window, fp, layout.tracks_end)
    return layout


def cut_paired(
    path: Path, stat: FileStat | None, keys: Collection[str], fp: Fingerprint, chunk_size: int
) -> tuple[Layout, array[int]]:
    """Cut the file at `path` with nothing known, as `cut_entries` does, and pair its entries
    one by one with `keys` (in file order: each entry must name its key). The file must still
    be the version `stat` describes: its open file has that stat before and after the read.
    Returns the layout and the keys as the 64-bit numbers they spell, by entry."""
    numbers = array("Q")
    remaining = iter(keys)

    def pair(_fingerprint: int, entry: bytes) -> None:
        key = next(remaining, "")
        number = hex16_number(key)
        if number is None or (key.encode() not in entry and key.encode() not in entry.upper()):
            raise FullReadNeeded("entries and tracks do not pair up")
        numbers.append(number)

    try:
        with open(path, "rb", buffering=0) as stream:
            if FileStat.of_fd(stream.fileno()) != stat:
                raise FullReadNeeded("the file changed after it was read")
            layout = cut_entries(Window(stream, chunk_size), fp, (), {}, pair)
            if FileStat.of_fd(stream.fileno()) != stat:
                raise FullReadNeeded("the file changed after it was read")
    except OSError:
        raise FullReadNeeded("the file could not be read again") from None
    if len(numbers) != len(keys):
        raise FullReadNeeded("entries and tracks do not pair up")
    return layout, numbers


def _tracks_start(window: Window) -> int:
    """Where the first entry can start: after the Tracks dict's `<dict>`, read from the start."""
    while True:
        start = window.search_end(_TRACKS, 0)
        if start >= 0:
            return start
        if window.stop > _MAX_PREFIX or not window.more(0):
            raise FullReadNeeded("no Tracks dict found")


def _add_run(
    fp: Fingerprint,
    window: Window,
    start: int,
    head_end: int,
    stop: int,
    fps: list[int],
    layout: Layout,
) -> None:
    head = window.copy(start, head_end)
    layout.runs.append(Run(head, stop - start, fp(window.view(start, stop)), array("q", fps)))


def _suffix_fingerprint(window: Window, fp: Fingerprint, start: int) -> int:
    """A fingerprint of the bytes from `start` to the end of the file, a chunk at a time.

    Each piece of a chunk's size from `start` on is fingerprinted, then the list of those:
    the same bytes give the same pieces, wherever the reads happened to stop.
    """
    pieces = array("q")
    pos = start
    piece = window.chunk_size
    while window.ensure(pos + piece, pos) or window.stop > pos:
        stop = min(pos + piece, window.stop)
        pieces.append(fp(window.view(pos, stop)))
        pos = stop
    return fp(memoryview(pieces.tobytes()))


def _only_sentinel(document: BinaryIO) -> bool:
    try:
        read = parse_library(document)
    except LibraryReadError:
        return False
    return list(read.tracks) == [_SENTINEL_ID] and not read.warnings


def check_prefix(prefix: bytes) -> None:
    """The bytes before the first entry open the plist, its top dict and the Tracks dict."""
    declared = _DECLARED_ENCODING.match(prefix)
    if declared is not None and declared.group(1).lower() != b"utf-8":
        raise FullReadNeeded("the file is not declared as UTF-8")
    doctype = prefix.find(b"<!DOCTYPE")
    if b"<!ENTITY" in prefix or (doctype >= 0 and b"[" in prefix[doctype:]):
        raise FullReadNeeded("the file has a DOCTYPE internal subset")
    if not _only_sentinel(io.BytesIO(prefix + _SENTINEL + _DOC_TAIL)):
        raise FullReadNeeded("the start of the file is not a plain library header")


def check_suffix(stream: io.RawIOBase, start: int) -> None:
    """The bytes of `stream` from `start` (the Tracks dict's `</dict>`) on close the document
    properly. They are read again from the file and parsed as they come, never held whole."""
    stream.seek(start)
    if not _only_sentinel(io.BufferedReader(_Joined(_DOC_HEAD + _SENTINEL, stream))):
        raise FullReadNeeded("the end of the file is not well-formed or holds more tracks")


class _Joined(io.RawIOBase):
    """`head`, then what `rest` reads: a few bytes made here followed by the end of a file."""

    def __init__(self, head: bytes, rest: io.RawIOBase) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        if not self._head:
            return self._rest.readinto(buffer)
        with memoryview(buffer) as target:
            count = min(len(target), len(self._head))
            target[:count] = self._head[:count]
        self._head = self._head[count:]
        return count


def parse_entries(new: dict[int, bytes]) -> dict[int, tuple[Track, bool]]:
    """Parse new entries with the full reader: fingerprint -> (Track, had a Persistent ID).

    `new` holds each entry's bytes by its fingerprint. Entries go in batches; a batch whose
    tracks cannot be matched one to one with its entries (a missing or repeated Persistent ID)
    is split until they can.
    """
    parsed: dict[int, tuple[Track, bool]] = {}
    pending = list(new.items())
    for i in range(0, len(pending), 4096):
        _parse_batch(pending[i : i + 4096], parsed)
    return parsed


def _parse_batch(items: list[tuple[int, bytes]], parsed: dict[int, tuple[Track, bool]]) -> None:
    document = b"".join([_DOC_HEAD, *(entry for _, entry in items), _DOC_TAIL])
    try:
        read = parse_library(io.BytesIO(document))
    except LibraryReadError as err:
        raise FullReadNeeded(f"a changed track does not parse: {err}") from None
    tracks = list(read.tracks.values())
    if not read.without_persistent_id and len(tracks) == len(items):
        for (fingerprint, _), track in zip(items, tracks, strict=True):
            parsed[fingerprint] = (track, True)
    elif len(items) == 1:
        parsed[items[0][0]] = (tracks[0], not read.without_persistent_id)
    else:
        half = len(items) // 2
        _parse_batch(items[:half], parsed)
        _parse_batch(items[half:], parsed)
