"""`musicd doctor`'s checks of the library: it exists, is the kind its source needs, can be
read (within a deadline: a privacy prompt or a dead volume hangs a read), parses (XML) or
Music.app answers (music-app), and on macOS whether privacy guards its folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from daemon.config import Config
from daemon.errors import LibraryReadError, describe_os_error
from daemon.library.access import (
    PRIVACY_PANE,
    describe_library_error,
    errno_name,
    programs_to_grant,
    protected_folder,
)
from daemon.mac.doctor_check import Check, with_deadline
from daemon.mac.launchd import installed_plist
from daemon.paths import library_kind_matches

# How long a read of the library (or an answer from Music.app) may take before it is reported.
READ_SECONDS = 30.0
# An XML file Music.app has not written for this long may no longer be shared.
STALE_XML_DAYS = 30
SHARE_XML = (
    "in Music.app turn on Settings > Files > 'Share Library XML with other applications', "
    "or set library.path"
)


@dataclass(frozen=True)
class _Kind:
    """How to say that library.path is not what one library.source reads."""

    name: str
    reads: str
    fix: str


_KINDS = {
    "xml": _Kind(
        "a regular file",
        "Library.xml",
        'point library.path at the XML file, or set library.source = "music-app"',
    ),
    "music-app": _Kind(
        "a directory",
        "the bundle",
        "point library.path at 'Music Library.musiclibrary' (or leave it out)",
    ),
}


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _os_failure(name: str, path: Path, err: OSError, platform: str) -> Check:
    hint = describe_library_error(err.errno, path, plist=installed_plist(), platform=platform)
    return Check(name, "fail", f"{path}: {errno_name(err.errno)} ({describe_os_error(err)})", hint)


def check_library(cfg: Config, platform: str, rescan_command: str) -> Iterator[Check]:
    path = cfg.library.path
    source = cfg.library.source
    try:
        st = os.stat(path)
    except FileNotFoundError:
        fix = (
            SHARE_XML
            if source == "xml"
            else "set library.path to your 'Music Library.musiclibrary'"
        )
        yield Check("library_path", "fail", f"{path} does not exist", fix)
        return
    except OSError as err:
        yield _os_failure("library_path", path, err, platform)
        return
    kind = _KINDS.get(source)
    if kind is not None and not library_kind_matches(source, st.st_mode):
        yield Check(
            "library_path",
            "fail",
            f'{path} is not {kind.name}; library.source = "{source}" reads {kind.reads}',
            kind.fix,
        )
        return
    probe = path if source == "xml" else path / "Library.musicdb"
    done, outcome = with_deadline(lambda: _read_some(probe), READ_SECONDS)
    if not done:
        yield Check(
            "library_path",
            "fail",
            f"reading {probe} did not finish within {READ_SECONDS:g} s",
            "a privacy prompt may be waiting, or a network volume stopped answering; "
            + describe_library_error(errno.EPERM, path, plist=installed_plist(), platform=platform),
        )
        return
    if isinstance(outcome, FileNotFoundError) and source == "music-app":
        yield Check("library_path", "warn", f"{path} has no Library.musicdb", None)
    elif isinstance(outcome, OSError):
        yield _os_failure("library_path", probe, outcome, platform)
        return
    else:
        yield Check("library_path", "ok", f"{path} exists and is readable")
    if platform == "darwin":
        yield _privacy(path)
    if source == "xml":
        yield _check_xml(path, st.st_mtime)
    else:
        yield from _check_music_app(rescan_command)


def _read_some(path: Path) -> int:
    with open(path, "rb") as fh:
        return len(fh.read(4096))


def _privacy(path: Path) -> Check:
    where = protected_folder(path)
    if where is None:
        return Check("privacy", "ok", f"{path} is outside the folders macOS privacy guards")
    programs = " and ".join(programs_to_grant(installed_plist()))
    return Check(
        "privacy",
        "warn",
        f"{where} is guarded by macOS privacy: a background musicd needs a grant even when "
        "this terminal can read it",
        f"allow {programs} in {PRIVACY_PANE}; again after every 'brew upgrade' of Python",
    )


def _check_xml(path: Path, mtime: float) -> Check:
    from daemon.library.xml_reader import read_library_xml

    done, outcome = with_deadline(lambda: read_library_xml(path), READ_SECONDS * 4)
    if not done:
        return Check("library_xml", "warn", f"parsing {path} took over {READ_SECONDS * 4:g} s")
    if isinstance(outcome, BaseException):
        return Check(
            "library_xml",
            "fail",
            str(outcome),
            "let Music.app write it again (quit and reopen Music.app), or check library.path",
        )
    age = time.time() - mtime
    wrote = time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime))
    message = f"{len(outcome.tracks)} tracks; last written {_ago(age)} ({wrote})"
    if age > STALE_XML_DAYS * 86400:
        return Check(
            "library_xml",
            "warn",
            message,
            f"not written for over {STALE_XML_DAYS} days: {SHARE_XML}",
        )
    return Check("library_xml", "ok", message)


def _check_music_app(rescan_command: str) -> Iterator[Check]:
    from importlib import resources

    from daemon.library import music_app

    osascript = shutil.which("osascript")
    if osascript is None:
        yield Check(
            "osascript",
            "fail",
            "osascript not found on PATH",
            'library.source = "music-app" works only on macOS; use "xml" elsewhere',
        )
        return
    yield Check("osascript", "ok", osascript)

    def ask() -> int:
        script = resources.files("daemon") / "data" / "music_library.js"
        with resources.as_file(script) as path:
            out = music_app.run_osascript(
                path, ["probe"], READ_SECONDS, READ_SECONDS, rescan_command=rescan_command
            )
        return len(music_app._parse(out, "probe", rescan_command).rows)

    done, outcome = with_deadline(ask, READ_SECONDS + 10)
    if not done:
        yield Check("music_app", "fail", f"Music.app did not answer in {READ_SECONDS:g} s")
    elif isinstance(outcome, LibraryReadError):
        yield Check("music_app", "fail", str(outcome))
    elif isinstance(outcome, BaseException):
        yield Check("music_app", "fail", f"asking Music.app failed: {outcome}")
    else:
        yield Check("music_app", "ok", f"Music.app answered: {outcome} tracks")
