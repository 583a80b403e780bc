"""launchctl for the logged-in user's GUI domain: load, unload, restart and query an agent.

launchctl is found on PATH: no launchctl (Linux) means the commands that need it fail with a
clear message, and the tests put a fake one first on PATH. The plist itself is launchd.py's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from daemon.errors import EX_UNAVAILABLE, DaemonError

# launchctl's exit status for "Could not find service".
SERVICE_NOT_FOUND = 113
# bootout returns before launchd has forgotten the service; bootstrapping it again too early
# fails with "5: Input/output error". ExitTimeOut (20 s) bounds how long that takes.
UNLOAD_WAIT_SECONDS = 30.0
UNLOAD_POLL_SECONDS = 0.2
LAUNCHCTL_TIMEOUT_SECONDS = 60.0


class LaunchdError(DaemonError, code="launchd_error"):
    pass


class LaunchctlMissing(LaunchdError, code="launchctl_missing", exit_status=EX_UNAVAILABLE):
    pass


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
