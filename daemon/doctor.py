"""`musicd doctor`: what is wrong on this machine, in order, each with the fix.

Each check returns one `Check`: `ok`, `warn` (works, but something will bite), `fail` (musicd
cannot work until it is fixed) or `skip` (does not apply here, e.g. launchd on Linux). The
checks run in the order a problem has to be solved: the config, then the library it names,
the state dir and database, the running daemon, the launchd agent (macOS), the log file.
Nothing is changed on disk; a read that hangs (a privacy prompt, a dead network volume) is
given `READ_SECONDS` and reported, never waited for.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat as stat_mod
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from daemon.config import Config
from daemon.errors import DaemonError, LibraryReadError, describe_os_error
from daemon.library.access import (
    PRIVACY_PANE,
    agent_interpreter,
    describe_library_error,
    errno_name,
    programs_to_grant,
    protected_folder,
)

Status = Literal["ok", "warn", "fail", "skip"]
T = TypeVar("T")
# How long a read of the library (or an answer from Music.app) may take before it is reported.
READ_SECONDS = 30.0
# An XML file Music.app has not written for this long may no longer be shared.
STALE_XML_DAYS = 30
DATABASE = "musicd.db"
SHARE_XML = (
    "in Music.app turn on Settings > Files > 'Share Library XML with other applications', "
    "or set library.path"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None

    def line(self) -> str:
        tail = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.status:<4} {self.name}: {self.message}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _with_deadline(work: Callable[[], T], seconds: float) -> tuple[bool, T | BaseException]:
    """Run `work` on a daemon thread; (finished, result or exception). A hang is left behind."""
    box: list[T | BaseException] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as err:
            box.append(err)

    thread = threading.Thread(target=run, name="musicd-doctor-read", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() or not box:
        return False, TimeoutError()
    return True, box[0]


# -- config ------------------------------------------------------------------------------------


def check_config(config_arg: str | None) -> tuple[Check, Config | None]:
    from daemon.config import load_config

    try:
        cfg = load_config(config_arg)
    except DaemonError as err:
        return Check(
            "config", "fail", str(err), "fix the file; 'musicd check-config' shows it"
        ), None
    where = str(cfg.source_path) if cfg.source_path else "built-in defaults (no config file)"
    return Check("config", "ok", f"loaded {where}"), cfg


# -- library -----------------------------------------------------------------------------------


def _os_failure(name: str, path: Path, err: OSError, platform: str) -> Check:
    hint = describe_library_error(err.errno, path, platform=platform)
    return Check(name, "fail", f"{path}: {errno_name(err.errno)} ({describe_os_error(err)})", hint)


def check_library(cfg: Config, platform: str) -> Iterator[Check]:
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
    if source == "xml" and not stat_mod.S_ISREG(st.st_mode):
        yield Check(
            "library_path",
            "fail",
            f'{path} is not a regular file; library.source = "xml" reads Library.xml',
            'point library.path at the XML file, or set library.source = "music-app"',
        )
        return
    if source == "music-app" and not stat_mod.S_ISDIR(st.st_mode):
        yield Check(
            "library_path",
            "fail",
            f'{path} is not a directory; library.source = "music-app" reads the bundle',
            "point library.path at 'Music Library.musiclibrary' (or leave it out)",
        )
        return
    probe = path if source == "xml" else path / "Library.musicdb"
    done, outcome = _with_deadline(lambda: _read_some(probe), READ_SECONDS)
    if not done:
        yield Check(
            "library_path",
            "fail",
            f"reading {probe} did not finish within {READ_SECONDS:g} s",
            "a privacy prompt may be waiting, or a network volume stopped answering; "
            + describe_library_error(errno.EPERM, path, platform=platform),
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
        yield from _check_music_app()


def _read_some(path: Path) -> int:
    with open(path, "rb") as fh:
        return len(fh.read(4096))


def _privacy(path: Path) -> Check:
    where = protected_folder(path)
    if where is None:
        return Check("privacy", "ok", f"{path} is outside the folders macOS privacy guards")
    from daemon.launchd import installed_plist

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

    done, outcome = _with_deadline(lambda: read_library_xml(path), READ_SECONDS * 4)
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


def _check_music_app() -> Iterator[Check]:
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
            out = music_app.run_osascript(path, ["probe"], READ_SECONDS, READ_SECONDS)
        return len(music_app._parse(out, "probe").rows)

    done, outcome = _with_deadline(ask, READ_SECONDS + 10)
    if not done:
        yield Check("music_app", "fail", f"Music.app did not answer in {READ_SECONDS:g} s")
    elif isinstance(outcome, LibraryReadError):
        yield Check("music_app", "fail", str(outcome))
    elif isinstance(outcome, BaseException):
        yield Check("music_app", "fail", f"asking Music.app failed: {outcome}")
    else:
        yield Check("music_app", "ok", f"Music.app answered: {outcome} tracks")


# -- state -------------------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _writable_dir(path: Path, what: str, name: str) -> Check:
    if path.exists():
        if not path.is_dir():
            return Check(name, "fail", f"{what} {path} is not a directory", "remove or rename it")
        if not os.access(path, os.W_OK | os.X_OK):
            return Check(
                name, "fail", f"{what} {path} is not writable", f"chown/chmod it for {_user()}"
            )
        return Check(name, "ok", f"{what} {path} is writable")
    parent = _nearest_existing(path)
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check(name, "ok", f"{what} {path} will be created at first start")
    return Check(
        name,
        "fail",
        f"{what} {path} cannot be created: {parent} is not writable",
        "choose another path in the config, or fix the permissions of " + str(parent),
    )


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def check_state(cfg: Config) -> Iterator[Check]:
    yield _writable_dir(cfg.state.dir, "state dir", "state_dir")
    yield check_database(cfg.state.dir / DATABASE)


def check_database(db: Path) -> Check:
    """Open the database read-only and run `PRAGMA quick_check` (never writes to it)."""
    if not db.exists():
        return Check("database", "ok", f"{db} will be created at first start")
    aside = (
        "stop musicd and move it aside: it is rebuilt from the library (cached answers are lost)"
    )
    try:
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        return Check("database", "fail", f"{db}: {err}", aside)
    if rows != ["ok"]:
        shown = "; ".join(str(r) for r in rows[:3])
        return Check("database", "fail", f"{db} is damaged: {shown}", aside)
    return Check("database", "ok", f"{db} passed quick_check")


# -- the running daemon ------------------------------------------------------------------------


def check_daemon(cfg: Config) -> Iterator[Check]:
    from daemon.client import MusicdClient
    from daemon.errors import NotRunning

    try:
        with MusicdClient(cfg.control.socket, timeout=5) as client:
            status = client.status()
    except NotRunning:
        yield Check(
            "daemon",
            "warn",
            f"nothing answers on {cfg.control.socket}",
            "start it: 'musicd run' (foreground) or 'musicd launchd install' (macOS)",
        )
        return
    except DaemonError as err:
        yield Check("daemon", "fail", f"{cfg.control.socket}: {err}", "restart musicd")
        return
    theirs = (status.get("state_dir"), status.get("library", {}).get("path"))
    ours = (str(cfg.state.dir), str(cfg.library.path))
    if theirs != ours:
        yield Check(
            "daemon",
            "fail",
            f"the daemon on {cfg.control.socket} (pid {status.get('pid')}) uses state dir "
            f"{theirs[0]} and library {theirs[1]}, not this config's",
            "stop it and start musicd with this config, or pass that daemon's --config",
        )
        return
    yield Check("daemon", "ok", f"running (pid {status.get('pid')}) with this config")
    library = status.get("library", {})
    problem = library.get("library_error")
    if problem:
        yield Check(
            "daemon_library",
            "fail",
            f"the daemon cannot read the library: {problem['errno']}: {problem['message']}",
            problem["hint"],
        )
    stalled = library.get("read_stalled")
    if stalled:
        yield Check(
            "daemon_library",
            "warn",
            f"the daemon's library read has been running for {stalled['seconds']:g} s",
            "a privacy prompt may be waiting (look for it, or grant access), a network "
            "volume may have stopped answering, or Music.app is busy",
        )


# -- launchd (macOS) ---------------------------------------------------------------------------


def check_launchd(platform: str) -> Iterator[Check]:
    if platform != "darwin":
        yield Check("launchd", "skip", "not macOS: the launchd agent checks do not apply")
        return
    from daemon import launchd

    plist = launchd.installed_plist()
    path = launchd.launch_agents_dir() / f"{launchd.LABEL}.plist"
    if plist is None:
        yield Check(
            "launchd",
            "warn",
            f"no agent at {path}: musicd does not start at login",
            "'musicd launchd install'",
        )
        return
    try:
        status = launchd.Launchctl.find().status(launchd.LABEL)
    except DaemonError as err:
        yield Check("launchd", "fail", str(err))
        return
    if not status.loaded:
        yield Check(
            "launchd",
            "warn",
            f"{path} is installed but not loaded",
            "check System Settings > General > Login Items (Allow in the Background must be "
            "on for musicd/python), then 'musicd launchd install'",
        )
    else:
        yield Check("launchd", "ok", f"loaded, {status.state or 'state unknown'}")
    yield _check_agent_program(plist)


def _check_agent_program(plist: dict[str, Any]) -> Check:
    args = plist.get("ProgramArguments") or []
    program = args[0] if args and isinstance(args[0], str) else None
    if program is None:
        return Check("launchd_program", "fail", "the agent's plist names no program")
    interpreter = agent_interpreter(plist)
    reinstall = "run 'musicd launchd install' again from the musicd you use"
    for candidate in dict.fromkeys(p for p in (program, interpreter) if p):
        if not os.access(candidate, os.X_OK):
            return Check(
                "launchd_program",
                "fail",
                f"the agent runs {candidate}, which is gone or not executable (a 'brew "
                "upgrade' or a deleted virtualenv?)",
                reinstall,
            )
        where = protected_folder(Path(candidate))
        if where is not None:
            return Check(
                "launchd_program",
                "fail",
                f"the agent runs {candidate}, inside {where}: launchd may not start programs "
                "there (exit status 78, 'Operation not permitted')",
                "move the virtualenv out of it (e.g. to ~/.local/share/musicd), then " + reinstall,
            )
    return Check("launchd_program", "ok", f"runs {program} (interpreter {interpreter})")


# -- log file ----------------------------------------------------------------------------------


def check_log(cfg: Config) -> Check:
    path = cfg.log.file
    if path.exists():
        if os.access(path, os.W_OK):
            return Check("log_file", "ok", f"{path} is writable")
        return Check("log_file", "fail", f"{path} is not writable", f"chown/chmod it for {_user()}")
    return _writable_dir(path.parent, "log dir", "log_file")


# -- all of them -------------------------------------------------------------------------------


def run_checks(config_arg: str | None, *, platform: str | None = None) -> list[Check]:
    """Every check, in order; stops after the config when it does not load."""
    platform = platform or sys.platform
    config_check, cfg = check_config(config_arg)
    checks = [config_check]
    if cfg is None:
        return checks
    checks.extend(check_library(cfg, platform))
    checks.extend(check_state(cfg))
    checks.extend(check_daemon(cfg))
    checks.extend(check_launchd(platform))
    checks.append(check_log(cfg))
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" for c in checks)
