"""`musicd doctor`: what is wrong on this machine, in order, each with the fix.

Each check returns one `Check`: `ok`, `warn` (works, but something will bite), `fail` (musicd
cannot work until it is fixed) or `skip` (does not apply here, e.g. launchd on Linux). The
checks run in the order a problem has to be solved: the config, then the library it names,
the state dir and database, the running daemon, the launchd agent (macOS), the triggers'
commands, the log file.
Nothing is changed on disk; a read that hangs (a privacy prompt, a dead network volume) is
given a deadline and reported, never waited for. The library's checks are in
daemon/mac/doctor_library.py.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon.config import Config
from daemon.errors import DaemonError
from daemon.library.access import agent_interpreter, protected_folder
from daemon.mac.doctor_check import Check
from daemon.mac.doctor_library import check_library
from daemon.stores.schema import reading

DATABASE = "musicd.db"


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
        with reading(db, read_only=True) as conn:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
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
    from daemon.mac import launchd

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


# -- triggers ----------------------------------------------------------------------------------


def check_triggers(cfg: Config) -> Iterator[Check]:
    """Whether the config file's triggers are taken, and each one's program can be run."""
    if cfg.triggers_refused is not None:
        yield Check(
            "triggers",
            "fail",
            f"no trigger runs: {cfg.triggers_refused}",
            "make the config file yours and writable by you alone (chown, chmod go-w)",
        )
    for trigger in cfg.triggers:
        program = trigger.command[0]
        # A bare name is looked up in PATH when the command starts, as here (a launchd agent's
        # PATH is short: /usr/bin:/bin:/usr/sbin:/sbin).
        found = program if "/" in program else shutil.which(program)
        name = f"trigger {trigger.name}"
        if found is None or not os.path.isfile(found) or not os.access(found, os.X_OK):
            yield Check(
                name,
                "fail",
                f"its command {program} is not found or not executable",
                "give the program's full path in the config, or chmod +x it",
            )
        else:
            yield Check(name, "ok", f"runs {found}")


# -- log file ----------------------------------------------------------------------------------


def check_log(cfg: Config) -> Check:
    path = cfg.log.file
    if path.exists():
        if os.access(path, os.W_OK):
            return Check("log_file", "ok", f"{path} is writable")
        return Check("log_file", "fail", f"{path} is not writable", f"chown/chmod it for {_user()}")
    return _writable_dir(path.parent, "log dir", "log_file")


# -- all of them -------------------------------------------------------------------------------


def run_checks(
    config_arg: str | None, *, rescan_command: str, platform: str | None = None
) -> list[Check]:
    """Every check, in order; stops after the config when it does not load.

    `rescan_command` is the `musicd rescan` a person runs after a fix (it ends some messages).
    """
    platform = platform or sys.platform
    config_check, cfg = check_config(config_arg)
    checks = [config_check]
    if cfg is None:
        return checks
    checks.extend(check_library(cfg, platform, rescan_command))
    checks.extend(check_state(cfg))
    checks.extend(check_daemon(cfg))
    checks.extend(check_launchd(platform))
    checks.extend(check_triggers(cfg))
    checks.append(check_log(cfg))
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" for c in checks)
