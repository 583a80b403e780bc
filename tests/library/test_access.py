"""Hints for OS errors on the library: each names the one thing that fixes it."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from daemon.library.access import (
    agent_interpreter,
    describe_library_error,
    errno_name,
    programs_to_grant,
    protected_folder,
)


def test_errno_names() -> None:
    assert errno_name(errno.EACCES) == "EACCES"
    assert errno_name(errno.ELOOP) == "ELOOP"
    assert errno_name(None) == "unknown"


def test_on_a_mac_permission_errors_name_the_programs_and_the_pane(tmp_path: Path) -> None:
    script = tmp_path / "musicd"
    script.write_text("#!/opt/homebrew/opt/python@3.12/bin/python3.12\nimport daemon\n")
    plist: dict[str, object] = {"ProgramArguments": [str(script), "run"]}
    home = Path(os.path.expanduser("~"))
    hint = describe_library_error(
        errno.EPERM, home / "Music" / "Music" / "Library.xml", platform="darwin", plist=plist
    )
    assert "~/Music/Music is protected by macOS privacy" in hint
    assert os.path.realpath(sys.executable) in hint
    assert "/opt/homebrew/opt/python@3.12/bin/python3.12" in hint
    assert "Privacy & Security > Full Disk Access" in hint
    assert "brew upgrade" in hint


def test_on_linux_permission_errors_name_the_user(tmp_path: Path) -> None:
    hint = describe_library_error(errno.EACCES, tmp_path / "x.xml", plist=None, platform="linux")
    assert "may not read" in hint and "chmod" in hint


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (errno.ELOOP, "points back at itself"),
        (errno.EIO, "reconnect it"),
        (errno.ESTALE, "reconnect it"),
        (errno.ENOTDIR, "is a file"),
        (errno.EBUSY, "retries"),
    ],
)
def test_other_errors(number: int, words: str, tmp_path: Path) -> None:
    assert words in describe_library_error(number, tmp_path / "x.xml", plist=None, platform="linux")


def test_protected_folders(tmp_path: Path) -> None:
    home = tmp_path
    assert protected_folder(home / "Documents" / "venv" / "bin", home) == "~/Documents"
    assert protected_folder(home / "Music" / "Music" / "x", home) == "~/Music/Music"
    assert protected_folder(home / "Music" / "Other", home) is None
    assert protected_folder(Path("/Volumes/NAS/Library.xml"), home) == "/Volumes"
    assert protected_folder(Path("/Users/Shared/Music"), home) is None


def test_agent_interpreter_reads_the_plist(tmp_path: Path) -> None:
    assert agent_interpreter(None) is None
    assert agent_interpreter({"ProgramArguments": []}) is None
    python = tmp_path / "python3"
    python.write_bytes(b"\x7fELF")
    assert agent_interpreter({"ProgramArguments": [str(python), "-m", "daemon"]}) == str(
        python.resolve()
    )
    assert programs_to_grant(None) == [os.path.realpath(sys.executable)]
