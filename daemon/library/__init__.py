"""Library readers and the differ: pure, synchronous code, easy to test.

Every reader is a `LibraryReader` and returns a `LibraryRead`: the tracks keyed by persistent
id in library order (by the rules of `daemon.library.identity`), plus the stat of the file
taken *before* the read (so a change during the read is never missed) and warnings that carry
a stable code. An incremental read may instead hand back only what changed since the read
before it (`LibraryRead.gone`): nothing then holds the whole library in memory between two
scans.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from daemon.models import Track


@dataclass(frozen=True, slots=True)
class FileStat:
    """What identifies one version of a file on disk."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileStat:
        st = os.stat(path)
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)

    @classmethod
    def of_fd(cls, fd: int) -> FileStat:
        st = os.fstat(fd)
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


class WarningCode(StrEnum):
    """What a read's warning is about: stable, so code compares codes and never the wording."""

    WITHOUT_PERSISTENT_ID = "without_persistent_id"
    DUPLICATE_IDS = "duplicate_ids"
    # A warning Music.app's script wrote in its own words: its text is all it says.
    MUSIC_APP = "music_app"


@dataclass(frozen=True, slots=True)
class LibraryWarning:
    """A problem a read found: `text` is for people and may be reworded; the rest is data."""

    code: WarningCode
    text: str
    # How many tracks it concerns, and the persistent ids it names (at most a few).
    count: int = 0
    ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.text

    def facts(self) -> tuple[WarningCode, int, tuple[str, ...]]:
        """Everything but the wording, for comparing the XML readers' warnings: two with equal
        facts say the same thing. A MUSIC_APP warning's only fact is its text (not compared)."""
        return (self.code, self.count, self.ids)


@dataclass(slots=True)
class LibraryRead:
    """The result of reading a library once."""

    tracks: dict[str, Track]
    stat: FileStat | None
    source: str
    # Tracks that had no Persistent ID and were given a fallback identity.
    without_persistent_id: int = 0
    # Later tracks that repeated an already seen Persistent ID (the first one wins).
    duplicate_ids: int = 0
    warnings: list[LibraryWarning] = field(default_factory=list)
    # Whether this read looked at the whole library (False: an incremental read reused work).
    full: bool = True
    # None: `tracks` is the whole library. A list: a read of the changes, since the read
    # before it (an incremental read) or against the tracks the daemon holds (a full read
    # given `KnownTracks`). `tracks` then holds only the tracks that are new or changed (one may
    # equal its former self), `gone` the keys no longer in the library, `track_count` the
    # total.
    gone: list[str] | None = None
    track_count: int = 0
    # Whether the tracks went to a build's sink as they were parsed (`SnapshotBuild`): then
    # `tracks` is empty and `track_count` the total.
    streamed: bool = False

    def count(self) -> int:
        """How many tracks the library holds."""
        return len(self.tracks) if self.gone is None and not self.streamed else self.track_count


class KnownTracks(Protocol):
    """The tracks the daemon holds (its snapshot), for a reader that reports only changes."""

    def get(self, keys: Collection[str]) -> dict[str, Track]:
        """The tracks of these keys, those that exist."""
        ...

    def keys(self) -> Iterator[str]:
        """Every key."""
        ...


# Where a streamed read hands its tracks: a batch at a time, by key, in library order.
TrackSink = Callable[[dict[str, Track]], None]


class SnapshotBuild(Protocol):
    """The daemon's build of its snapshot (its first start, or after a damaged database was
    set aside), for a reader that can stream a full read into it."""

    def begin(self) -> TrackSink | None:
        """Called at the start of each full read, on the read's thread. While the build is due,
        makes this read a new attempt at it and returns where its tracks go, in batches as
        they are parsed (the read keeps none: `LibraryRead.streamed`); None otherwise.
        Raises what the build's store raises (DatabaseUnavailable)."""
        ...


class ReadProgress(Protocol):
    """Where a reader reports how far its read has got, from the read's thread: absolute
    values (a read started again reports 0), one left out keeps what it was."""

    def __call__(
        self,
        *,
        bytes_done: int | None = None,
        bytes_total: int | None = None,
        tracks_done: int | None = None,
    ) -> None: ...


@runtime_checkable
class LibraryReader(Protocol):
    """What the scanner asks of a reader; `app.make_reader` picks one by `library.source`.

    `read` runs on the scanner's read thread, which may be left running past its deadline;
    `cancel` comes from the event loop while a read runs, `forget` between reads. A reader
    with nothing to do for one of them still has it, as a no-op.
    """

    def read(self, progress: ReadProgress | None = None) -> LibraryRead:
        """Read the library once, telling `progress` how far it got (if it can tell).

        Raises:
            LibraryReadError: the library cannot be read; `LibraryChangedDuringRead` when it
                changed while it was read.
        """
        ...

    def forget(self) -> None:
        """Drop what earlier reads kept: the next read is compared in full. The scanner asks
        when a scan was not recorded (the reader moved on, the baseline did not)."""
        ...

    def cancel(self) -> None:
        """Stop a read in progress, if it can be stopped (at shutdown)."""
        ...


# The database inside Music.app's library bundle: Music.app rewrites it in place, which moves
# its mtime but not the bundle directory's.
MUSIC_DB = "Library.musicdb"


def library_stat(path: Path) -> FileStat | None:
    """The library's stat, or None when nothing is at `path` (it or a parent is missing).

    Whatever is there has a stat, a regular file or not: the readers decide what they accept.
    For a directory (Music.app's bundle), the newer of its mtime and `Library.musicdb`'s, and
    that file's size: the bundle's own mtime moves only when an entry is added or removed.

    Raises:
        OSError: any other error (permission, symlink loop, I/O): the caller decides.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat_mod.S_ISDIR(st.st_mode):
        try:
            db = os.stat(os.path.join(path, MUSIC_DB))
        except OSError:
            return FileStat(st.st_mtime_ns, st.st_size, st.st_ino)
        return FileStat(max(st.st_mtime_ns, db.st_mtime_ns), db.st_size, st.st_ino)
    return FileStat(st.st_mtime_ns, st.st_size, st.st_ino)
