"""Default locations per platform, what kind of path each library source reads, and the
socket path length check."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from daemon.errors import SocketPathTooLong

APP = "musicd"
# sun_path is 104 bytes on macOS and 108 on Linux, both including the trailing NUL.
SUN_PATH_MAX = 104 if sys.platform == "darwin" else 108


def is_macos() -> bool:
    return sys.platform == "darwin"


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return _home() / fallback


def default_config_path() -> Path:
    if is_macos():
        return _home() / "Library" / "Application Support" / APP / "config.toml"
    return _xdg("XDG_CONFIG_HOME", ".config") / APP / "config.toml"


def default_state_dir() -> Path:
    if is_macos():
        return _home() / "Library" / "Application Support" / APP
    return _xdg("XDG_STATE_HOME", ".local/state") / APP


def default_log_file() -> Path:
    if is_macos():
        return _home() / "Library" / "Logs" / APP / f"{APP}.log"
    return default_state_dir() / f"{APP}.log"


def default_socket_path() -> Path:
    """A short socket path in a private per-user directory.

    macOS: `$TMPDIR` is long (/var/folders/…/T/), so use /tmp/musicd-<uid>/; the directory is
    created 0700 and its owner is checked before use. Linux: `$XDG_RUNTIME_DIR` when set.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not is_macos() and runtime and os.path.isabs(runtime):
        return Path(runtime) / APP / f"{APP}.sock"
    return Path("/tmp") / f"{APP}-{os.getuid()}" / f"{APP}.sock"


def default_library_path() -> Path:
    """Where Music.app writes its shared Library XML (File > Library > Export Library…)."""
    return _home() / "Music" / "Music" / "Library.xml"


def library_is_dir(source: str) -> bool:
    """Whether library.source reads a directory (Music.app's bundle) rather than a file."""
    return source == "music-app"


def library_kind_matches(source: str, mode: int) -> bool:
    """Whether a stat's `st_mode` is what `source` reads: a regular file ("xml"), a directory
    ("music-app")."""
    return stat.S_ISDIR(mode) if library_is_dir(source) else stat.S_ISREG(mode)


def expand(path: str | Path) -> Path:
    """A config file's path value with ~ and $VARS expanded (the config model's rule)."""
    return Path(os.path.expandvars(os.path.expanduser(str(path))))


def anchored(path: Path, config_dir: Path) -> Path:
    """A relative path in a config file is relative to the file, not to the daemon's cwd."""
    return path if path.is_absolute() else config_dir / path


def check_socket_path(path: Path) -> None:
    """Raise SocketPathTooLong when `path` does not fit in sun_path on this platform."""
    size = len(os.fsencode(str(path)))
    if size >= SUN_PATH_MAX:
        raise SocketPathTooLong(
            f"control.socket is {size} bytes long but a Unix socket path must be under "
            f"{SUN_PATH_MAX} bytes here ({path}); set control.socket to a shorter path"
        )
