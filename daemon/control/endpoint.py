"""The socket file and its peers: a private directory, one live daemon per socket, same uid only.

Kept apart from the server so the checks can run before the daemon's task groups open (a second
daemon must fail with a plain message, not from inside a task group).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import sys
from pathlib import Path
from typing import Final

import structlog

from daemon.errors import AlreadyRunning, StateError, describe_os_error
from daemon.paths import check_socket_path

log = structlog.get_logger(__name__)

# File descriptors kept free for everything but connections (state files, logs, watcher).
FD_RESERVE: Final = 128
# macOS: getsockopt(SOL_LOCAL, LOCAL_PEERCRED) fills a struct xucred.
SOL_LOCAL: Final = 0
LOCAL_PEERCRED: Final = 0x001
XUCRED_VERSION: Final = 0
XUCRED_FORMAT: Final = "IIh16I"  # cr_version, cr_uid, cr_ngroups, cr_groups[16]


def prepare_socket_path(path: Path, stop_command: str) -> None:
    """Make `path` ready to bind: a private directory, and no live daemon behind it.

    `stop_command` is the `musicd stop` that reaches the daemon on `path`, for the message.

    The directory is created 0700 when missing; an existing one must be owned by this user and
    closed to group and others. A socket that answers belongs to another musicd: refuse rather
    than steal it (binding would silently replace it). One that refuses connections is left
    over from a crash: remove it.

    Raises:
        AlreadyRunning: another musicd answers on `path`.
        StateError: the directory is unsafe or unusable, or `path` is not a socket.
    """
    check_socket_path(path)
    ensure_socket_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StateError(
            f"{path} exists and is not a socket; remove it or set control.socket to another path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        # Nobody listens: the socket of a daemon that crashed or was killed.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        log.info("stale_socket_removed", socket=str(path))
        return
    except FileNotFoundError:
        return
    except TimeoutError:
        pass  # a listener with a full backlog is still a live daemon
    except OSError as err:
        raise StateError(f"cannot check socket {path}: {describe_os_error(err)}") from None
    finally:
        probe.close()
    raise AlreadyRunning(
        f"another musicd is already listening on {path}; stop it with '{stop_command}' or "
        "set control.socket to another path"
    )


def ensure_socket_dir(directory: Path) -> None:
    """Create `directory` 0700 if missing; refuse one another user owns or can get into."""
    try:
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        pass
    except OSError as err:
        raise StateError(
            f"cannot create socket directory {directory}: {describe_os_error(err)}"
        ) from None
    try:
        st = os.stat(directory)
    except OSError as err:
        raise StateError(
            f"cannot use socket directory {directory}: {describe_os_error(err)}"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"socket directory {directory} is not a directory; set control.socket")
    if st.st_uid != os.getuid():
        raise StateError(
            f"socket directory {directory} belongs to uid {st.st_uid}, not to you "
            f"(uid {os.getuid()}); remove it or set control.socket to a directory of yours"
        )
    if st.st_mode & 0o077:
        raise StateError(
            f"socket directory {directory} is open to other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run 'chmod 700 {directory}' or set control.socket "
            "to a private directory"
        )


def socket_ident(path: Path) -> tuple[int, int, int]:
    """What tells our socket file from one bound later at the same path.

    The inode alone does not: tmpfs hands a freed inode number straight out again. Taken after
    the chmod, the ctime changes only if someone else touches the file.
    """
    st = os.lstat(path)
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def remove_socket_if_ours(path: Path, ident: tuple[int, int, int]) -> None:
    """Unlink the socket at `path` unless another daemon has replaced it meanwhile."""
    try:
        if socket_ident(path) != ident:
            return
        os.unlink(path)
    except OSError:
        return
    log.debug("socket_removed", socket=str(path))


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket; None where unknown."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        return int(uid)
    if sys.platform == "darwin":
        raw = sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, struct.calcsize(XUCRED_FORMAT))
        version, uid = struct.unpack_from("II", raw)
        return int(uid) if version == XUCRED_VERSION else None
    return None


def peer_refusal(peer: int | None, own: int) -> str | None:
    """Why a peer with uid `peer` may not talk to a daemon running as `own`; None if it may.

    Where the platform cannot tell (None), the 0600 socket in a 0700 directory is the guard.
    """
    if peer is None or peer == own:
        return None
    return f"permission denied: this musicd belongs to uid {own} and does not serve uid {peer}"


def fit_connection_limit(wanted: int) -> int:
    """How many of `wanted` connections the open-file limit leaves room for (at least one).

    Only reads the limit: the daemon raises it once at start-up (daemon/process.py).
    """
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))
