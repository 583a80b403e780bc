"""What an OS error on the library means, and the one thing that fixes it.

On a Mac the commonest one is not a Unix permission at all: macOS's privacy system (TCC)
refuses a background program access to `~/Music/Music`, `~/Desktop`, `~/Documents`,
`~/Downloads` and everything under `/Volumes` until the user allows that *program* (not the
user) in System Settings. The grant belongs to the executable: a new Python after `brew
upgrade` is a new program and has to be allowed again. So the hint names the exact executable
to allow: this process's interpreter with every symlink resolved, and the interpreter the
launchd agent starts, read from its plist.
"""

from __future__ import annotations

import errno
import os
import pwd
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "PROTECTED_HOME_DIRS",
    "LibraryError",
    "agent_interpreter",
    "describe_library_error",
    "errno_name",
    "programs_to_grant",
    "protected_folder",
]

# Folders of the home directory that macOS's privacy system guards for a background program
# (relative to $HOME); `/Volumes` is guarded too. iCloud Drive lives in Library/Mobile Documents.
PROTECTED_HOME_DIRS = (
    "Desktop",
    "Documents",
    "Downloads",
    "Music/Music",
    "Library/Mobile Documents",
)
PRIVACY_PANE = "System Settings > Privacy & Security > Full Disk Access"
# A volume that went away, or a network share that stopped answering.
_VOLUME_ERRORS = frozenset(
    {errno.EIO, errno.ETIMEDOUT, errno.ENOTCONN, errno.ESTALE, errno.EHOSTDOWN, errno.ENXIO}
)


@dataclass(frozen=True, slots=True)
class LibraryError:
    """An OS error on the library, as `status` shows it."""

    errno: str
    message: str
    hint: str
    since: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def errno_name(number: int | None) -> str:
    if number is None:
        return "unknown"
    return errno.errorcode.get(number, str(number))


def protected_folder(path: Path, home: Path | None = None) -> str | None:
    """The macOS-protected folder `path` is in (e.g. '~/Documents'), or None."""
    home = home or Path(os.path.expanduser("~"))
    resolved = Path(os.path.abspath(path))
    for name in PROTECTED_HOME_DIRS:
        folder = home / name
        if resolved == folder or folder in resolved.parents:
            return f"~/{name}"
    if resolved.parts[1:2] == ("Volumes",):
        return "/Volumes"
    return None


def _interpreter_of(program: str) -> str:
    """`program` itself, or the interpreter on its `#!` line when it is a script."""
    try:
        with open(program, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return program
    if first.startswith(b"#!"):
        words = first[2:].decode(errors="replace").split()
        if words and words[0] != "/usr/bin/env":
            return words[0]
    return program


def agent_interpreter(plist: dict[str, object] | None) -> str | None:
    """The interpreter the launchd agent runs, symlinks resolved (what macOS grants access)."""
    if not plist:
        return None
    args = plist.get("ProgramArguments")
    if not isinstance(args, list) or not args or not isinstance(args[0], str):
        return None
    return os.path.realpath(_interpreter_of(args[0]))


def programs_to_grant(plist: dict[str, object] | None = None) -> list[str]:
    """This interpreter and the agent's, resolved: each is its own program to macOS."""
    programs = [os.path.realpath(sys.executable)] if sys.executable else []
    agent = agent_interpreter(plist)
    if agent:
        programs.append(agent)
    return list(dict.fromkeys(programs))


def describe_library_error(
    number: int | None,
    path: Path,
    *,
    plist: dict[str, object] | None,
    platform: str | None = None,
) -> str:
    """A one-line hint for an OS error `number` on the library at `path`.

    `plist`: the installed launchd agent's (`mac.launchd.installed_plist()`), None without one;
    on a Mac, the program it runs is one to allow.
    """
    platform = platform or sys.platform
    if number in (errno.EPERM, errno.EACCES):
        if platform == "darwin":
            programs = " and ".join(programs_to_grant(plist))
            where = protected_folder(path)
            why = f"{where} is protected by macOS privacy" if where else "macOS refused access"
            return (
                f"{why}: allow {programs} in {PRIVACY_PANE} (or Files and Folders / Media & "
                "Apple Music), then run 'musicd rescan'; allow it again after 'brew upgrade'"
            )
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = str(os.geteuid())
        return (
            f"user {user} may not read {path}: give it read access (chmod/chown, and "
            "execute on every directory above it); musicd retries by itself"
        )
    if number == errno.ELOOP:
        return f"a symbolic link in {path} points back at itself: fix or remove the link"
    if number == errno.ENOTDIR:
        return f"a part of {path} is a file, not a directory: check library.path"
    if number == errno.ENAMETOOLONG:
        return "the path is too long: check library.path"
    if number in _VOLUME_ERRORS:
        return (
            f"the disk or network volume holding {path} failed or went away: reconnect it; "
            "musicd retries by itself"
        )
    return "musicd retries on the next change and at least every library.verify_seconds"
