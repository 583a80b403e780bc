"""The per-user launchd agent: the plist rendered from launchd/<label>.plist, and launchctl.

The template's @...@ values are replaced in the parsed plist and the result is written back
with plistlib, so a path with odd characters can never break the XML. launchctl is found on
PATH: no launchctl (Linux) means the commands that need it fail with a clear message, and the
tests put a fake one first on PATH.
"""

from __future__ import annotations

import copy
import os
import plistlib
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import EX_UNAVAILABLE, DaemonError

LABEL = "io.musicd.agent"
TEMPLATE = Path(__file__).resolve().parents[1] / "launchd" / f"{LABEL}.plist"
# What the daemon may run besides itself (osascript is in /usr/bin).
BASE_PATH = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
# launchctl's exit status for "Could not find service".
SERVICE_NOT_FOUND = 113
# bootout returns before launchd has forgotten the service; bootstrapping it again too early
# fails with "5: Input/output error". ExitTimeOut (20 s) bounds how long that takes.
UNLOAD_WAIT_SECONDS = 30.0
UNLOAD_POLL_SECONDS = 0.2
LAUNCHCTL_TIMEOUT_SECONDS = 60.0

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
    "EnvironmentVariables": {"PATH": "@PATH@"},
}


class LaunchdError(DaemonError):
    code = "launchd_error"
    exit_status = 1


class LaunchctlMissing(LaunchdError):
    code = "launchctl_missing"
    exit_status = EX_UNAVAILABLE


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


@dataclass(frozen=True)
class ServiceStatus:
    """What `launchctl print` says about a service (loaded=False: launchd does not know it)."""

    loaded: bool
    state: str | None = None
    pid: int | None = None
    last_exit_code: str | None = None
    last_signal: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def parse_print(text: str) -> ServiceStatus:
    """Read the top-level `key = value` lines of `launchctl print gui/<uid>/<label>`."""
    fields: dict[str, str] = {}
    depth = 0
    for raw in text.splitlines():
        line = raw.strip()
        if line.endswith("{"):
            depth += 1
        elif line == "}":
            depth -= 1
        elif depth == 1 and " = " in line:
            key, _, value = line.partition(" = ")
            fields.setdefault(key.strip(), value.strip())
    pid = fields.get("pid", "")
    return ServiceStatus(
        loaded=True,
        state=fields.get("state"),
        pid=int(pid) if pid.isdigit() else None,
        last_exit_code=fields.get("last exit code"),
        last_signal=fields.get("last terminating signal"),
        fields=fields,
    )


class Launchctl:
    """launchctl for the logged-in user's GUI domain."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.domain = f"gui/{os.getuid()}"

    @classmethod
    def find(cls) -> Launchctl:
        executable = shutil.which("launchctl")
        if executable is None:
            raise LaunchctlMissing(
                "launchctl not found on PATH: launchd agents are a macOS feature "
                "('musicd launchd install --dry-run' still shows the plist)"
            )
        return cls(executable)

    def target(self, label: str) -> str:
        return f"{self.domain}/{label}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.executable, *args],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=LAUNCHCTL_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LaunchdError(
                f"launchctl {' '.join(args)} did not finish in {LAUNCHCTL_TIMEOUT_SECONDS:.0f} s"
            ) from None
        except OSError as err:
            raise LaunchdError(f"cannot run {self.executable}: {err.strerror}") from None

    def _check(self, proc: subprocess.CompletedProcess[str], hint: str = "") -> None:
        if proc.returncode == 0:
            return
        said = "; ".join(
            ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()
        )
        command = " ".join(str(a) for a in proc.args[1:])
        raise LaunchdError(
            f"launchctl {command} failed (exit {proc.returncode}): {said or 'no message'}{hint}"
        )

    def status(self, label: str) -> ServiceStatus:
        proc = self.run("print", self.target(label))
        if proc.returncode == SERVICE_NOT_FOUND or (
            proc.returncode != 0 and "could not find" in (proc.stderr + proc.stdout).lower()
        ):
            return ServiceStatus(loaded=False)
        self._check(proc)
        return parse_print(proc.stdout)

    def bootout(self, label: str) -> None:
        self._check(self.run("bootout", self.target(label)))

    def wait_unloaded(self, label: str, timeout: float = UNLOAD_WAIT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while self.status(label).loaded:
            if time.monotonic() > deadline:
                raise LaunchdError(f"{label} was still loaded {timeout:.0f} s after bootout")
            time.sleep(UNLOAD_POLL_SECONDS)

    def enable(self, label: str) -> None:
        # A service once disabled (launchctl disable, some uninstallers) refuses to bootstrap
        # with a bare "5: Input/output error" until it is enabled again.
        self._check(self.run("enable", self.target(label)))

    def bootstrap(self, plist_path: Path) -> None:
        self._check(
            self.run("bootstrap", self.domain, str(plist_path)),
            hint="; if musicd was switched off in System Settings > General > Login Items "
            "(Allow in the Background), switch it on and install again; if this is an SSH "
            "session, log in at the Mac once (agents need a GUI login); or see "
            f"'launchctl print {self.domain}'",
        )

    def kickstart(self, label: str) -> None:
        proc = self.run("kickstart", "-k", self.target(label))
        if proc.returncode == SERVICE_NOT_FOUND:
            raise LaunchdError(f"{label} is not loaded; install it with 'musicd launchd install'")
        self._check(proc)


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
