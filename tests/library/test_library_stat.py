"""`library_stat`: None only when nothing is there; anything else there has a stat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.library import MUSIC_DB, FileStat, library_stat


def test_none_only_when_nothing_is_at_the_path(tmp_path: Path) -> None:
    assert library_stat(tmp_path / "missing.xml") is None
    (tmp_path / "file").write_bytes(b"x")
    # A "directory" on the way that is a file: nothing can be at the path either.
    assert library_stat(tmp_path / "file" / "Library.xml") is None


def test_a_regular_file_has_its_own_stat(tmp_path: Path) -> None:
    path = tmp_path / "Library.xml"
    path.write_bytes(b"<plist/>")
    assert library_stat(path) == FileStat.of(path)


def test_a_fifo_is_not_a_regular_file_and_still_has_a_stat(tmp_path: Path) -> None:
    path = tmp_path / "Library.xml"
    os.mkfifo(path)
    assert library_stat(path) == FileStat.of(path)


def test_a_directory_without_the_music_database_has_its_own_stat(tmp_path: Path) -> None:
    bundle = tmp_path / "Music Library.musiclibrary"
    bundle.mkdir()
    assert library_stat(bundle) == FileStat.of(bundle)


def test_a_directory_has_the_newer_mtime_and_the_music_database_size(tmp_path: Path) -> None:
    bundle = tmp_path / "Music Library.musiclibrary"
    bundle.mkdir()
    db = bundle / MUSIC_DB
    db.write_bytes(b"0123456789")
    os.utime(bundle, ns=(0, 1_000_000_000))
    os.utime(db, ns=(0, 2_000_000_000))
    inode = os.stat(bundle).st_ino
    assert library_stat(bundle) == FileStat(2_000_000_000, 10, inode)
    # Music.app adding an entry moves the bundle's own mtime past the database's.
    os.utime(bundle, ns=(0, 3_000_000_000))
    assert library_stat(bundle) == FileStat(3_000_000_000, 10, inode)


def test_other_errors_are_raised_for_the_caller(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(OSError):
        library_stat(loop)
