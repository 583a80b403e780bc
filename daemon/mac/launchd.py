"""The per-user launchd agent: the plist rendered from launchd/<label>.plist, installed or removed.

The template's @...@ values are replaced in the parsed plist and the result is written back
with plistlib, so a path with odd characters can never break the XML. Loading and querying the
agent is launchctl.py's; install() and uninstall() combine the two.
"""

from __future__ import annotations

import copy
import os
import plistlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Launchctl is re-exported: callers manage the agent through this module.
from daemon.mac.launchctl import Launchctl as Launchctl
from daemon.mac.launchctl import LaunchdError

LABEL = "io.musicd.agent"
TEMPLATE = Path(__file__).resolve().parents[2] / "launchd" / f"{LABEL}.plist"
# What the daemon may run besides itself (osascript is in /usr/bin).
BASE_PATH = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
# The same as launchd/io.musicd.agent.plist (a test keeps them equal), for an installed wheel,
# which does not carry the launchd/ directory of the source tree.
_BUILTIN_TEMPLATE: dict[str, Any] = {
    "Label": LABEL,
    "ProgramArguments": ["@PROGRAM@", "run"],
    "RunAtLoad": True,
    "KeepAlive": {"SuccessfulExit": False},
    "ProcessType": "Background",
    "LowPriorityIO": True,
    "Nice": 10,
    "ThrottleInterval": 30,
    "ExitTimeOut": 20,
    "StandardOutPath": "@LOG_DIR@/musicd.stdout.log",
    "StandardErrorPath": "@LOG_DIR@/musicd.stderr.log",
    # PYTHONMALLOC: the allocator that hands free pages back (daemon.process, on memory).
    "EnvironmentVariables": {"PATH": "@PATH@", "PYTHONMALLOC": "malloc"},
}


def load_template() -> dict[str, Any]:
    """The agent template from the source tree, or the built-in copy of it."""
    try:
        with TEMPLATE.open("rb") as fh:
            template: dict[str, Any] = plistlib.load(fh)
    except FileNotFoundError:
        return copy.deepcopy(_BUILTIN_TEMPLATE)
    return template


def program_prefix() -> list[str]:
    """How to start this installation of musicd, as absolute paths.

    The `musicd` script next to the interpreter when there is one, else the interpreter with
    `-m daemon`. sys.executable is not resolved: a venv's python is a symlink to the base
    interpreter, and resolving it would lose the venv.
    """
    if not sys.executable:
        raise LaunchdError("cannot tell which Python runs musicd (sys.executable is empty)")
    python = Path(os.path.abspath(sys.executable))
    script = python.parent / "musicd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "daemon"]


def launch_agents_dir() -> Path:
    return Path(os.path.expanduser("~")) / "Library" / "LaunchAgents"


@dataclass(frozen=True)
class Agent:
    """A rendered agent: its plist and where it goes."""

    label: str
    plist: dict[str, Any]
    plist_path: Path
    log_dir: Path

    def to_bytes(self) -> bytes:
        return plistlib.dumps(self.plist, fmt=plistlib.FMT_XML, sort_keys=False)

    @property
    def output_files(self) -> list[Path]:
        return [
            Path(self.plist[key])
            for key in ("StandardOutPath", "StandardErrorPath")
            if key in self.plist
        ]


def render_agent(
    *, log_dir: Path, config_path: Path | None = None, template: dict[str, Any] | None = None
) -> Agent:
    """Fill in the template with absolute paths for this machine and this installation."""
    source = template if template is not None else load_template()
    prefix = program_prefix()
    bin_dir = str(Path(prefix[0]).parent)
    search_path = ":".join(dict.fromkeys([bin_dir, *BASE_PATH]))

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            out: list[Any] = []
            for item in value:
                out.extend(prefix if item == "@PROGRAM@" else [fill(item)])
            return out
        if value == "@PATH@":
            return search_path
        if isinstance(value, str) and value.startswith("@LOG_DIR@/"):
            return str(log_dir / value.removeprefix("@LOG_DIR@/"))
        if isinstance(value, str) and re.fullmatch(r"@[A-Z_]+@.*", value):
            raise LaunchdError(
                f"the agent template has a placeholder musicd does not know: {value}"
            )
        return value

    plist: dict[str, Any] = fill(source)
    if config_path is not None:
        plist["ProgramArguments"] += ["--config", str(config_path)]
        plist.setdefault("EnvironmentVariables", {})["MUSICD_CONFIG"] = str(config_path)
    label = plist["Label"]
    return Agent(
        label=label, plist=plist, plist_path=launch_agents_dir() / f"{label}.plist", log_dir=log_dir
    )


def agent_for_config(config_arg: str | None) -> Agent:
    """The agent for the config the daemon would use (validated now, not at the first start).

    Raises:
        ConfigError: the config does not load; installing it would only restart-loop.
    """
    from daemon.config import load_config, resolve_config_path

    cfg = load_config(config_arg)
    path, explicit = resolve_config_path(config_arg)
    # Only a config chosen explicitly (--config or MUSICD_CONFIG) is passed on: launchd's
    # environment has neither, and the default location is found without help.
    config_path = Path(os.path.abspath(path)) if explicit else None
    return render_agent(log_dir=Path(os.path.abspath(cfg.log.file.parent)), config_path=config_path)


def install_commands(agent: Agent, launchctl: str = "launchctl") -> list[list[str]]:
    """What install runs, for --dry-run (bootout only when the agent is already loaded)."""
    domain = f"gui/{os.getuid()}"
    return [
        ["mkdir", "-p", str(agent.log_dir)],
        [launchctl, "bootout", f"{domain}/{agent.label}"],
        [launchctl, "enable", f"{domain}/{agent.label}"],
        [launchctl, "bootstrap", domain, str(agent.plist_path)],
    ]


def write_agent_files(agent: Agent) -> None:
    """Create the log dir and launchd's output files, and write the plist atomically."""
    from daemon.stores._atomic import write_atomic

    agent.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in agent.output_files:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created now so they are the user's (launchd would create them too) and can be tailed.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
    agent.plist_path.parent.mkdir(parents=True, exist_ok=True)
    # launchd refuses a plist that is group- or world-writable.
    write_atomic(agent.plist_path, agent.to_bytes(), mode=0o644)


def install(agent: Agent, launchctl: Launchctl) -> bool:
    """Write the agent and (re)load it; True when an already loaded one was replaced."""
    try:
        write_agent_files(agent)
    except OSError as err:
        raise LaunchdError(
            f"cannot write {err.filename or agent.plist_path}: {err.strerror}"
        ) from None
    replaced = launchctl.status(agent.label).loaded
    if replaced:
        launchctl.bootout(agent.label)
        launchctl.wait_unloaded(agent.label)
    launchctl.enable(agent.label)
    launchctl.bootstrap(agent.plist_path)
    return replaced


def uninstall(launchctl: Launchctl, label: str = LABEL) -> tuple[bool, bool]:
    """Unload the agent and remove its plist: (it was loaded, the plist existed)."""
    loaded = launchctl.status(label).loaded
    if loaded:
        launchctl.bootout(label)
    plist_path = launch_agents_dir() / f"{label}.plist"
    try:
        plist_path.unlink()
    except FileNotFoundError:
        return loaded, False
    except OSError as err:
        raise LaunchdError(f"cannot remove {plist_path}: {err.strerror}") from None
    return loaded, True


def installed_plist(label: str = LABEL) -> dict[str, Any] | None:
    """The installed agent's plist, or None when there is none (or it is unreadable)."""
    try:
        with (launch_agents_dir() / f"{label}.plist").open("rb") as fh:
            data: dict[str, Any] = plistlib.load(fh)
    except (OSError, plistlib.InvalidFileException, ValueError):
        return None
    return data


# How much of the end of a log file is searched for why the daemon last stopped.
_LOG_TAIL_BYTES = 256 * 1024
_CONFIG_FAILURES = frozenset({"config_error", "socket_path_too_long"})


def agent_log_files(plist: dict[str, Any] | None) -> list[Path]:
    """Where the agent's daemon logs: the default log file, and its config's (if it loads)."""
    from daemon.config import load_config
    from daemon.errors import ConfigError
    from daemon.paths import default_log_file

    files = [default_log_file()]
    config: str | None = None
    if plist is not None:
        args = plist.get("ProgramArguments") or []
        if "--config" in args[:-1]:
            config = args[args.index("--config") + 1]
    try:
        files.append(load_config(config).log.file)
    except (ConfigError, OSError):
        pass
    return list(dict.fromkeys(files))


def last_config_failure(log_files: list[Path]) -> str | None:
    """The error of a config failure logged after the daemon's last start, if any.

    `musicd run` logs `config_invalid` (or `daemon_failed` with a config code) before it exits
    with status 78; a 78 without one is launchd failing to start the program at all.
    """
    import orjson

    # The latest start or config failure over all files (ISO timestamps sort as text).
    latest: tuple[str, str | None] | None = None
    for path in log_files:
        try:
            with path.open("rb") as fh:
                fh.seek(max(path.stat().st_size - _LOG_TAIL_BYTES, 0))
                lines = fh.read().splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(entry, dict):
                continue
            event = entry.get("event")
            failure = event == "config_invalid" or (
                event == "daemon_failed" and entry.get("code") in _CONFIG_FAILURES
            )
            if event == "daemon_started" or failure:
                error = str(entry.get("error") or "the config is invalid") if failure else None
                stamp = str(entry.get("timestamp", ""))
                if latest is None or stamp > latest[0]:
                    latest = (stamp, error)
                break
    return latest[1] if latest else None
