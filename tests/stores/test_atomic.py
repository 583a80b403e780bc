from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from daemon.errors import StateError
from daemon.stores._atomic import ensure_private_dir, write_atomic
from tests.support import umask


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_creates_owner_only_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b'{"a": 1}')
    assert target.read_bytes() == b'{"a": 1}'
    assert _mode(target) == 0o600
    assert _leftovers(tmp_path) == []


def test_write_atomic_replaces_and_tightens_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_atomic(target, b"new" * 100_000)
    assert target.read_bytes() == b"new" * 100_000
    assert _mode(target) == 0o600
    write_atomic(target, b"x", mode=0o640)
    assert _mode(target) == 0o640


def test_failed_fsync_leaves_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old content")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as info:
        write_atomic(target, b"new content")
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == []


def test_failed_rename_leaves_old_file_and_no_temp_file(tmp_path: Path) -> None:
    # A non-empty directory in the target's place makes the rename itself fail.
    target = tmp_path / "state.json"
    target.mkdir()
    (target / "keep").write_bytes(b"kept")
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert (target / "keep").read_bytes() == b"kept"
    assert _leftovers(tmp_path) == []


def test_write_into_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "state.json", b"x")


def test_ensure_private_dir_creates_0700_whatever_the_umask(tmp_path: Path) -> None:
    with umask(0o022):
        ensure_private_dir(tmp_path / "a" / "b" / "state")
    assert _mode(tmp_path / "a" / "b" / "state") == 0o700
    ensure_private_dir(tmp_path / "a" / "b" / "state")  # existing: fine


def test_ensure_private_dir_keeps_existing_mode(tmp_path: Path) -> None:
    existing = tmp_path / "chosen"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    ensure_private_dir(existing)
    assert _mode(existing) == 0o755


def test_ensure_private_dir_on_a_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StateError):
        ensure_private_dir(tmp_path / "file")
    with pytest.raises(StateError):
        ensure_private_dir(tmp_path / "file" / "sub")
