"""File primitives: an owner-only state directory, and atomic whole-file writes (the launchd
plist): a file is either the complete old version or the complete new one, never a mix. The
temp file is fsynced, renamed over the target, and the directory fsynced so the rename itself
survives a power cut.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from daemon.errors import StateError, describe_os_error

# Some file systems (a few network and FUSE ones) cannot fsync a directory; the rename is
# still atomic there, so this is not worth failing a save for.
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES})


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably; the file gets `mode` (owner-only).

    On any failure the temp file is removed, the old file is left as it was, and the error is
    re-raised.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            # mkstemp already creates 0600; fchmod makes any other mode exact whatever the umask.
            if mode != 0o600:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in directory `path` durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        if err.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> None:
    """Create `path` and its parents if missing; a directory created here is owner-only (0700).

    An existing directory keeps its mode: the user chose it. Raises StateError when the path
    cannot be created (or exists and is not a directory).
    """
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise StateError(f"{path} exists and is not a directory") from None
        return
    except OSError as err:
        raise StateError(f"cannot create {path}: {describe_os_error(err)}") from err
    # mkdir's mode is filtered by the umask; make it exactly 0700.
    os.chmod(path, 0o700)
