from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.errors import StateError
from daemon.stores._atomic import (
    SaveTracker,
    ensure_private_dir,
    load_json_or_quarantine,
    write_atomic,
)

CORRUPT_NAME = re.compile(r"^state\.json\.corrupt-\d{8}T\d{6}Z(-\d+)?$")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def _validate_v1(data: Any) -> dict[str, Any]:
    if data["version"] != 1:
        raise ValueError(f"unsupported version {data['version']}")
    result: dict[str, Any] = data
    return result


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


def test_load_missing_file_is_none(tmp_path: Path) -> None:
    assert load_json_or_quarantine(tmp_path / "state.json", _validate_v1, what="t") is None


def test_load_valid_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, orjson.dumps({"version": 1, "x": [1, 2]}))
    assert load_json_or_quarantine(target, _validate_v1, what="t") == {"version": 1, "x": [1, 2]}


@pytest.mark.parametrize(
    "content",
    [
        b'{"version": 1, "x": [1, 2',  # torn
        b"\xff\xfe not json",
        b"",
        b'{"version": 2}',  # a version this code does not know
        b"[1, 2, 3]",  # wrong shape: TypeError in the validator
        b'{"no_version": true}',  # KeyError in the validator
    ],
)
def test_bad_content_is_quarantined(tmp_path: Path, content: bytes) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(content)
    with capture_logs() as logs:
        assert load_json_or_quarantine(target, _validate_v1, what="test state") is None
    assert not target.exists()
    moved = [p for p in tmp_path.iterdir() if CORRUPT_NAME.match(p.name)]
    assert len(moved) == 1
    assert moved[0].read_bytes() == content
    [entry] = [e for e in logs if e["event"] == "state_file_quarantined"]
    assert entry["log_level"] == "warning"
    assert entry["path"] == str(target)
    assert entry["moved_to"] == str(moved[0])
    assert entry["what"] == "test state"
    assert entry["reason"] and "\n" not in entry["reason"]


def test_quarantine_names_are_unique(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    for n in range(3):
        target.write_bytes(b"garbage %d" % n)
        assert load_json_or_quarantine(target, _validate_v1, what="t") is None
    moved = sorted(p.read_bytes() for p in tmp_path.iterdir() if CORRUPT_NAME.match(p.name))
    assert moved == [b"garbage 0", b"garbage 1", b"garbage 2"]


def test_unreadable_file_is_left_in_place(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.mkdir()  # reading a directory fails with an OSError that is not "not found"
    with capture_logs() as logs:
        assert load_json_or_quarantine(target, _validate_v1, what="t") is None
    assert target.is_dir()
    assert [e["event"] for e in logs] == ["state_file_unreadable"]


def test_ensure_private_dir_creates_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ensure_private_dir(tmp_path / "a" / "b" / "state")
    finally:
        os.umask(old)
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


def test_save_tracker_stays_dirty_when_changed_after_capture() -> None:
    tracker = SaveTracker()
    assert not tracker.dirty
    tracker.changed()
    captured = tracker.revision
    tracker.changed()
    assert tracker.write_if_newer(captured, lambda: None)
    assert tracker.dirty
    assert tracker.write_if_newer(tracker.revision, lambda: None)
    assert not tracker.dirty


def test_save_tracker_never_writes_an_older_capture_over_a_newer_one() -> None:
    tracker = SaveTracker()
    written: list[int] = []
    tracker.changed()
    old = tracker.revision
    tracker.changed()
    new = tracker.revision
    assert tracker.write_if_newer(new, lambda: written.append(new))
    assert not tracker.write_if_newer(old, lambda: written.append(old))
    assert written == [new]
    assert not tracker.dirty


def test_save_tracker_failed_write_stays_dirty() -> None:
    tracker = SaveTracker()
    tracker.changed()

    def fail() -> None:
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError):
        tracker.write_if_newer(tracker.revision, fail)
    assert tracker.dirty
