"""Persistence primitives shared by the stores: atomic writes, forgiving loads, save bookkeeping.

A state file is either the complete old version or the complete new one, never a mix: every
write goes to a temp file in the same directory, is fsynced, renamed over the target, and the
directory is fsynced so the rename itself survives a power cut. A file that fails to load is
moved aside and the store starts empty; bad state never stops the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog
from pydantic import ValidationError

from daemon.errors import StateError, describe_os_error

log = structlog.get_logger(__name__)

T = TypeVar("T")

# What a validator may raise for content of the wrong version or shape. pydantic's
# ValidationError and orjson's JSONDecodeError are ValueErrors; listed for the reader.
BAD_CONTENT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    ValidationError,
    orjson.JSONDecodeError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
)

# Some file systems (a few network and FUSE ones) cannot fsync a directory; the rename is
# still atomic there, so this is not worth failing a save for.
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES})

_MAX_REASON = 300
_SPACES = re.compile(r"\s+")


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


def remove_durably(path: Path) -> bool:
    """Delete `path` (a missing file is fine) and fsync its directory. True if it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


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


def load_or_quarantine(path: Path, parse: Callable[[bytes], T], *, what: str) -> T | None:
    """Parse the bytes of `path`; move the file aside if they are bad.

    Returns None when the file does not exist, cannot be read (logged, left in place) or holds
    content `parse` rejects (logged, moved to `<name>.corrupt-<UTC timestamp>`). Never raises
    for bad content.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning(
            "state_file_unreadable", what=what, path=str(path), reason=describe_os_error(err)
        )
        return None
    try:
        return parse(raw)
    except BAD_CONTENT_ERRORS as err:
        quarantine(path, what=what, reason=_one_line(err))
        return None


def load_json_or_quarantine(path: Path, validate: Callable[[Any], T], *, what: str) -> T | None:
    """Like load_or_quarantine, for a JSON document checked by `validate`.

    `validate` receives the decoded JSON and raises ValueError (pydantic's ValidationError is
    one), KeyError or TypeError when its version or shape is wrong.
    """
    return load_or_quarantine(path, lambda raw: validate(orjson.loads(raw)), what=what)


def quarantine(path: Path, *, what: str, reason: str) -> Path | None:
    """Move a bad state file aside so it is kept for a person to look at and a new one is built.

    Returns where it went, or None if it could not be moved (logged; the next save replaces it).
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        os.replace(path, target)
    except OSError as err:
        log.warning(
            "state_file_quarantine_failed",
            what=what,
            path=str(path),
            reason=reason,
            error=describe_os_error(err),
        )
        return None
    log.warning(
        "state_file_quarantined", what=what, path=str(path), moved_to=str(target), reason=reason
    )
    return target


def _one_line(err: Exception) -> str:
    text = _SPACES.sub(" ", str(err)).strip()
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 1] + "…"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a load builds a million objects.

    None of them is garbage, yet each allocation burst triggers a collection that walks them
    all again: pausing it makes big loads about twice as fast. Process-wide, so keep it short.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class SaveTracker:
    """Whether a store has unsaved changes, and ordering of its writes.

    The store calls `changed()` on every mutation (event loop thread). A capture takes the
    current `revision`; its write runs in a worker thread through `write_if_newer`, which
    serialises writers of the same files and skips a capture older than the one already on
    disk, so two overlapping flushes can never leave the older state behind. `dirty` turns
    false only when the revision that was written is still the current one.
    """

    __slots__ = ("_lock", "_saved", "revision")

    def __init__(self) -> None:
        self.revision = 0
        # Revision 0 is whatever was loaded (or nothing): it is already on disk.
        self._saved = 0
        self._lock = threading.Lock()

    def changed(self) -> None:
        self.revision += 1

    @property
    def dirty(self) -> bool:
        return self.revision != self._saved

    def write_if_newer(self, revision: int, write: Callable[[], None]) -> bool:
        """Run `write` unless a capture at least as new was already written; True if it ran."""
        with self._lock:
            if revision <= self._saved:
                return False
            write()
            self._saved = revision
            return True
