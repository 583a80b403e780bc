"""Library readers and the differ: pure, synchronous code, easy to test.

Every reader returns a `LibraryRead`: the tracks keyed by persistent id in library order, plus
the stat of the file taken *before* the read (so a change during the read is never missed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    warnings: list[str] = field(default_factory=list)


def library_stat(path: Path) -> FileStat | None:
    """The library file's stat, or None when it does not exist (or is not a regular file)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return FileStat(st.st_mtime_ns, st.st_size, st.st_ino)
