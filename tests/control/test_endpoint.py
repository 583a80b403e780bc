"""The socket file: a private directory, one live daemon per socket, stale ones removed; peers."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.control.endpoint import (
    ensure_socket_dir,
    peer_refusal,
    peer_uid,
    prepare_socket_path,
    remove_socket_if_ours,
    socket_ident,
)
from daemon.errors import AlreadyRunning, StateError
from tests.support import short_tempdir, umask

STOP = "/opt/bin/musicd stop --socket /tmp/d.sock"


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_missing_socket_dir_is_created_owner_only(root: Path) -> None:
    with umask(0o022):
        prepare_socket_path(root / "a" / "run" / "s.sock", STOP)
    assert mode(root / "a" / "run") == 0o700


def test_socket_dir_open_to_others_is_refused_with_the_fix(root: Path) -> None:
    shared = root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with pytest.raises(StateError, match=r"open to other users \(mode 0755\); run 'chmod 700"):
        ensure_socket_dir(shared)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to hand a directory to another user")
def test_socket_dir_of_another_user_is_refused(root: Path) -> None:
    theirs = root / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(StateError, match="belongs to uid 65534, not to you"):
        ensure_socket_dir(theirs)


def test_socket_path_that_is_a_file_is_refused(root: Path) -> None:
    (root / "s.sock").write_text("not a socket")
    with pytest.raises(StateError, match="exists and is not a socket"):
        prepare_socket_path(root / "s.sock", STOP)
    assert (root / "s.sock").read_text() == "not a socket"


def test_stale_socket_of_a_crashed_daemon_is_removed(root: Path) -> None:
    path = root / "s.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: connecting is refused
    with capture_logs() as logs:
        prepare_socket_path(path, STOP)
    assert not path.exists()
    assert [e for e in logs if e["event"] == "stale_socket_removed"]


def test_live_socket_is_never_stolen(root: Path) -> None:
    path = root / "s.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen()
    try:
        with pytest.raises(AlreadyRunning, match=f"another musicd is already listening on {path}"):
            prepare_socket_path(path, STOP)
        with pytest.raises(AlreadyRunning) as refused:
            prepare_socket_path(path, STOP)
        assert f"stop it with '{STOP}'" in str(refused.value)  # the caller's invocation
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        live.close()


def test_only_our_own_socket_is_removed(root: Path) -> None:
    path = root / "s.sock"
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    first.bind(str(path))
    ours = socket_ident(path)
    os.rename(path, root / "old.sock")
    second = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    second.bind(str(path))  # another daemon took the path meanwhile
    try:
        remove_socket_if_ours(path, ours)
        assert path.exists()
        remove_socket_if_ours(path, socket_ident(path))
        assert not path.exists()
    finally:
        first.close()
        second.close()


def test_peer_uid_reads_the_kernels_credentials() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert peer_uid(a) == os.getuid()


def test_peer_of_another_uid_is_refused_and_same_uid_is_not() -> None:
    assert peer_refusal(501, 501) is None
    assert peer_refusal(None, 501) is None  # platform cannot tell: file permissions guard it
    reason = peer_refusal(502, 501)
    assert reason is not None
    assert "belongs to uid 501 and does not serve uid 502" in reason
