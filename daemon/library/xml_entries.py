"""Cut the Tracks dict of an XML library into fingerprinted entries, for `FastXmlReader`.

An *entry* is the `<key>` with a track id, then the track's `<dict>` up to its `</dict>`;
consecutive entries form *runs* of up to `RUN_ENTRIES`, each also fingerprinted as a whole so
that an unchanged run is found again with one hash. This module finds the entries and runs of
one version of the file, checks the bytes around the Tracks dict, and parses new entries with
the full reader's parser. Whatever it cannot vouch for raises `FullReadNeeded`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
from array import array
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Final

from daemon.errors import LibraryReadError
from daemon.library.xml_reader import parse_library
from daemon.models import Track

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


def default_fingerprint() -> Fingerprint:
    """`hash()` (SipHash under the per-process random key) unless PYTHONHASHSEED fixed it."""
    if os.environ.get("PYTHONHASHSEED", "random") in ("", "random"):
        return hash
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
    """Where the entries of one version of the file are, and which of them are new."""

    tracks_start: int
    tracks_end: int  # where the `</dict>` that closes the Tracks dict starts
    entries: array[int] = field(default_factory=lambda: array("q"))
    new: dict[int, int] = field(default_factory=dict)  # fingerprint -> where the entry starts
    runs: list[Run] = field(default_factory=list)
    # The runs of the previous version found again, and the entries cut one by one.
    matched: list[Run] = field(default_factory=list)
    loose: list[int] = field(default_factory=list)


def cut_entries(
    data: bytes,
    view: memoryview,
    fp: Fingerprint,
    known: Container[int],
    runs: dict[bytes, Run],
) -> Layout:
    """Cut the Tracks dict into entries: known runs whole, everything else entry by entry.

    `known` holds the fingerprints of entries already parsed (the others go to `Layout.new`),
    `runs` the runs of the previous version by the bytes of their first entry's head.
    """
    match = _TRACKS.search(data)
    if match is None:
        raise FullReadNeeded("no Tracks dict found")
    start = match.end()
    layout = Layout(tracks_start=start, tracks_end=-1)
    entries, new = layout.entries, layout.new
    find, size = data.find, len(data)
    # The run being made of entries read one by one (no per-entry records: at 100k tracks
    # they would be megabytes of short-lived objects interleaved with long-lived ones).
    run_fps: list[int] = []
    run_start = run_head_end = run_stop = 0
    pos = start
    while True:
        end = find(END, pos)
        if end < 0:
            raise FullReadNeeded("the Tracks dict does not end")
        head = _HEAD.match(data, pos, end)
        if head is None:
            if _BLANK.fullmatch(data, pos, end):
                layout.tracks_end = end
                break
            raise FullReadNeeded("unexpected content in the Tracks dict")
        head_end = head.end()
        run = runs.get(data[pos:head_end])
        if (
            run is not None
            and pos + run.length <= size
            and fp(view[pos : pos + run.length]) == run.fingerprint
        ):
            if run_fps:
                _add_run(fp, view, data, run_start, run_head_end, run_stop, run_fps, layout)
                run_fps = []
            entries.extend(run.entries)
            layout.runs.append(run)
            layout.matched.append(run)
            pos += run.length
            continue
        fingerprint = fp(view[pos:end])
        if fingerprint not in known and fingerprint not in new:
            for marker in _NOT_IN_ENTRY:
                if find(marker, head_end, end) >= 0:
                    raise FullReadNeeded("a track holds a nested dict, comment or CDATA")
            new[fingerprint] = pos
        entries.append(fingerprint)
        layout.loose.append(fingerprint)
        if not run_fps:
            run_start, run_head_end = pos, head_end
        run_fps.append(fingerprint)
        pos = run_stop = end + _END_LEN
        if len(run_fps) == RUN_ENTRIES:
            _add_run(fp, view, data, run_start, run_head_end, run_stop, run_fps, layout)
            run_fps = []
    if run_fps:
        _add_run(fp, view, data, run_start, run_head_end, run_stop, run_fps, layout)
    return layout


def _add_run(
    fp: Fingerprint,
    view: memoryview,
    data: bytes,
    start: int,
    head_end: int,
    stop: int,
    fps: list[int],
    layout: Layout,
) -> None:
    fingerprint = fp(view[start:stop])
    layout.runs.append(Run(data[start:head_end], stop - start, fingerprint, array("q", fps)))


def _only_sentinel(document: bytes) -> bool:
    try:
        read = parse_library(io.BytesIO(document))
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
    if not _only_sentinel(prefix + _SENTINEL + _DOC_TAIL):
        raise FullReadNeeded("the start of the file is not a plain library header")


def check_suffix(suffix: memoryview) -> None:
    """The bytes from the Tracks dict's `</dict>` on close the document properly."""
    if not _only_sentinel(_DOC_HEAD + _SENTINEL + suffix.tobytes()):
        raise FullReadNeeded("the end of the file is not well-formed or holds more tracks")


def parse_entries(data: bytes, new: dict[int, int]) -> dict[int, tuple[Track, bool]]:
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
    entries = (data[s : find(END, s) + _END_LEN] for _, s in items)
    document = b"".join([_DOC_HEAD, *entries, _DOC_TAIL])
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
        _parse_batch(data, items[:half], parsed)
        _parse_batch(data, items[half:], parsed)
