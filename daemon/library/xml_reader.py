"""Streaming reader for the XML library (Music.app `Library.xml`, `iTunes Music Library.xml`).

The file is an Apple XML property list that can reach 100k tracks and ~60 MB. It is parsed with
expat in 1 MiB chunks by the state machine in `daemon.library.plist_tracks`, which keeps only
the tracks (what values read as, and what the parser refuses, are described there). Tracks
are keyed by their "Persistent ID" by the rules of `daemon.library.identity`, which also gives
tracks without one a fallback identity from their "Location" or tags.

This module opens the file and makes sure it did not change while it was read.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from daemon.errors import LibraryChangedDuringRead, LibraryReadError, describe_os_error
from daemon.library import FileStat, KnownTracks, LibraryRead, ReadProgress, TrackSink
from daemon.library.keys import KeyOrder
from daemon.library.plist_tracks import CHUNK_SIZE, parse_tracks
from daemon.models import Track

__all__ = [
    "CHUNK_SIZE",
    "check_unchanged",
    "parse_library",
    "read_compared",
    "read_library_xml",
    "read_streamed",
]


def parse_library(stream: BinaryIO, *, source: str = "xml") -> LibraryRead:
    """Parse an XML library from a binary stream.

    Returns the tracks keyed by persistent id in file order, with `stat=None`.

    Raises:
        LibraryReadError: the stream is empty, unreadable, not well-formed XML, not a library
            plist, or uses entities. Nothing is returned from a partly read file.
    """
    return parse_tracks(stream, source=source, what="library file")


def read_library_xml(
    path: Path,
    *,
    sink: Callable[[dict[str, Track]], None] | None = None,
    progress: ReadProgress | None = None,
) -> LibraryRead:
    """Read the XML library at `path`, making sure it did not change while it was read.

    The returned `stat` is the one taken before reading: when it still matches the file later,
    the tracks are current. With `sink`, the tracks are handed to it in batches and not kept
    (see `parse_tracks`); `progress` hears of the file's size, then of each chunk parsed.

    Raises:
        LibraryReadError: the file is missing, not a regular file, unreadable or invalid.
        LibraryChangedDuringRead: the file's mtime, size or inode changed during the read.
    """
    name = f"library file {path}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LibraryReadError(f"{name} does not exist") from None
    except OSError as err:
        raise LibraryReadError(
            f"{name} cannot be read: {describe_os_error(err)}", os_errno=err.errno
        ) from None
    if stat_mod.S_ISDIR(st.st_mode):
        raise LibraryReadError(f"{name} is a directory, not a file")
    if not stat_mod.S_ISREG(st.st_mode):
        # Opening a FIFO would block the reader forever.
        raise LibraryReadError(f"{name} is not a regular file")
    before = FileStat(st.st_mtime_ns, st.st_size, st.st_ino)
    if progress is not None:
        progress(bytes_done=0, bytes_total=st.st_size, tracks_done=0)
    try:
        with open(path, "rb", buffering=0) as stream:
            result = parse_tracks(stream, source="xml", what=name, sink=sink, progress=progress)
    except OSError as err:
        check_unchanged(path, before)
        raise LibraryReadError(
            f"{name} cannot be read: {describe_os_error(err)}", os_errno=err.errno
        ) from None
    except LibraryReadError:
        # A file that is being rewritten reads as truncated: that is a change, not damage.
        check_unchanged(path, before)
        raise
    check_unchanged(path, before)
    result.stat = before
    return result


def read_compared(
    path: Path, snapshot: KnownTracks, *, progress: ReadProgress | None = None
) -> tuple[LibraryRead, KeyOrder]:
    """A full read compared with `snapshot` batch by batch as it is parsed, so that the
    library is never in memory whole: the read's `tracks` are those the snapshot does not hold
    as they are, its `gone` the snapshot's keys the file no longer has. Also returns every
    key, in file order. Raises as `read_library_xml` does."""
    changed: dict[str, Track] = {}
    seen = KeyOrder()

    def compare(batch: dict[str, Track]) -> None:
        held = snapshot.get(batch)
        seen.extend(batch)
        changed.update((key, track) for key, track in batch.items() if held.get(key) != track)

    result = read_library_xml(path, sink=compare, progress=progress)
    result.tracks = changed
    result.gone = [key for key in snapshot.keys() if key not in seen]
    return result, seen


def read_streamed(
    path: Path, sink: TrackSink, *, progress: ReadProgress | None = None
) -> tuple[LibraryRead, KeyOrder]:
    """A full read whose tracks go to `sink` batch by batch as they are parsed (a build of the
    snapshot), so that the library is never in memory whole: the read is `streamed`, its
    `tracks` empty. Also returns every key, in file order. Raises as `read_library_xml` does,
    and what `sink` raises."""
    seen = KeyOrder()

    def hand_on(batch: dict[str, Track]) -> None:
        seen.extend(batch)
        sink(batch)

    result = read_library_xml(path, sink=hand_on, progress=progress)
    result.streamed = True
    return result, seen


def check_unchanged(path: Path, before: FileStat) -> None:
    """Raise `LibraryChangedDuringRead` unless `path` still has the stat `before`."""
    try:
        after = FileStat.of(path)
    except OSError:
        after = None
    if after != before:
        raise LibraryChangedDuringRead(
            f"library file {path} changed while it was being read; read it again"
        )
