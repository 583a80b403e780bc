"""The one way tests and benchmarks run the daemon: the real `python -m daemon run` subprocess
on a temp config, waited for by its log, talked to over its socket, stopped by a signal.

Faults are injected only at process boundaries: signals, a command prefix (`wrapper`), code
run in the child before exec (`preexec`, e.g. resource limits), and the files it works on.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from daemon.client import MusicdClient
from tests.support.common import short_tempdir, wait_for
from tests.support.database import db_cache_entries, db_tracks
from tests.support.library import sample_library_bytes


@dataclass
class DaemonProc:
    """A real `python -m daemon run` subprocess on files in a temp dir."""

    root: Path
    config_path: Path
    library: Path
    state_dir: Path
    socket: Path
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    # A command prefix the daemon execs from (same pid), e.g. a namespace without inotify.
    wrapper: list[str] | None = None
    # Run in the child before exec, e.g. resource limits.
    preexec: Callable[[], None] | None = None
    # A kill -9 can cut the last log line short, and the next start appends to it. When torn
    # lines are expected they are counted here instead of failing the test.
    torn_lines_ok: bool = False
    torn_log_lines: int = 0
    # How long a start may take to log `daemon_started`.
    ready_timeout: float = 20.0
    _log_pos: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)

    def start_built(self) -> None:
        """Start the daemon and wait until its snapshot is built (the first scan committed)."""
        self.start()
        self.wait_log("snapshot_built")

    def start(
        self,
        *,
        wait_ready: bool = True,
        extra_env: dict[str, str] | None = None,
        user: str | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        """Start the daemon, as `user` and under `wrapper` (a command prefix, else the one set on
        this object) when given: a test running as root needs a daemon that file permissions
        can refuse."""
        # As the launchd agent runs it: under the C allocator (daemon.process), so the daemon
        # does not replace itself at start.
        env = {"PYTHONMALLOC": "malloc", **os.environ, **(extra_env or {})}
        env.pop("MUSICD_CONFIG", None)
        mark = self.mark()
        prefix = wrapper if wrapper is not None else self.wrapper
        # Output goes to files, not pipes: a pipe nobody drains would block the daemon.
        with (
            (self.root / "stdout.txt").open("ab") as out,
            (self.root / "stderr.txt").open("ab") as err,
        ):
            self.proc = subprocess.Popen(
                [
                    *(prefix or []),
                    sys.executable,
                    *("-m", "daemon", "run", "--config", str(self.config_path)),
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
                preexec_fn=self.preexec,
                user=user,
                group=None if user is None else pwd.getpwnam(user).pw_gid,
                extra_groups=None if user is None else [],
            )
        if wait_ready:
            # This start's line, not an earlier run's.
            self.wait_log("daemon_started", timeout=self.ready_timeout, after=mark)

    def run_to_exit(
        self, config: Path | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a daemon in the foreground on this config (or `config`) until it exits, its
        output captured: a start that must be refused, beside or instead of this one."""
        return subprocess.run(
            [sys.executable, "-m", "daemon", "run", "--config", str(config or self.config_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- the log

    def logs(self) -> list[dict[str, Any]]:
        """Every log entry so far (JSON lines of the log file)."""
        if not self.log_file.exists():
            return self.seen
        with self.log_file.open("rb") as fh:
            fh.seek(self._log_pos)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            if not line.strip():
                continue
            try:
                self.seen.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                if not self.torn_lines_ok:
                    raise
                self.torn_log_lines += 1
        self._log_pos += end
        return self.seen

    def find_logs(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.logs()
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def events_since(self, mark: int, *names: str) -> list[dict[str, Any]]:
        return [e for e in self.logs()[mark:] if e.get("event") in names]

    def wait_log(
        self, event: str, timeout: float = 10.0, after: int = 0, **match: Any
    ) -> dict[str, Any]:
        """Wait for the first log entry `event` (with `match`) at index >= `after`."""

        def found() -> dict[str, Any] | None:
            self.check_alive(event)
            for e in itertools.islice(self.logs(), after, None):
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    return e
            return None

        result: dict[str, Any] = wait_for(found, timeout, what=f"log event {event} {match}")
        return result

    def mark(self) -> int:
        return len(self.logs())

    def check_alive(self, waiting_for: str) -> None:
        """Fail at once, with its stderr, if the daemon exited while a test waits for it."""
        if (
            self.proc is not None
            and self.proc.poll() is not None
            and waiting_for != "daemon_stopped"
        ):
            raise AssertionError(
                f"daemon exited with {self.proc.returncode} while waiting for {waiting_for}:\n"
                f"{self.stderr()[-3000:]}"
            )

    def stderr(self) -> str:
        path = self.root / "stderr.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the socket

    def client(self, timeout: float = 30.0) -> MusicdClient:
        return MusicdClient(self.socket, timeout=timeout)

    def wait_socket(self, timeout: float = 30.0) -> None:
        def answers() -> bool:
            self.check_alive("socket")
            try:
                with self.client(timeout=2) as c:
                    c.ping()
            except Exception:
                return False
            return True

        wait_for(answers, timeout, what="daemon answering on its socket")

    # -- the process

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send `sig` and wait; returns (exit status, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, time.monotonic() - started

    def kill(self) -> None:
        """Clean-up: kill -9 if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def kill9(self) -> None:
        """The fault: kill -9 now (it must be running)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def rss_kib(self) -> int:
        return _status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        return _status_kib(self.pid, "VmHWM")

    # -- its files

    def snapshot_tracks(self) -> dict[str, dict[str, Any]]:
        """The tracks table as another program reads it (read-only, while the daemon runs)."""
        return db_tracks(self.state_dir)

    def cache_entries(self) -> list[dict[str, Any]]:
        return db_cache_entries(self.state_dir)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def write_config(root: Path, library_path: Path, /, **sections: dict[str, Any]) -> Path:
    base: dict[str, dict[str, Any]] = {
        "library": {"path": str(library_path), "settle_seconds": 0.2, "verify_seconds": 60},
        "state": {"dir": str(root / "state"), "flush_interval_seconds": 0.2},
        "control": {"socket": str(root / "d.sock")},
        "log": {"file": str(root / "musicd.log"), "level": "debug"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines: list[str] = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {orjson.dumps(value).decode()}")
    path = root / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextmanager
def daemon_env(
    library_bytes: bytes | None = None,
    *,
    root: Path | None = None,
    torn_lines_ok: bool = False,
    ready_timeout: float = 20.0,
    **sections: dict[str, Any],
) -> Iterator[DaemonProc]:
    """A dir with a library (the sample one unless given), a config and a daemon not yet
    started; killed after, and the dir removed unless the caller gave it (or MUSICD_KEEP is
    set, to look at what a failed test left)."""
    made = root is None
    root = root or short_tempdir()
    library = root / "lib" / "Library.xml"
    library.parent.mkdir(parents=True, exist_ok=True)
    library.write_bytes(library_bytes if library_bytes is not None else sample_library_bytes())
    cfg = write_config(root, library, **sections)
    d = DaemonProc(
        root=root,
        config_path=cfg,
        library=library,
        state_dir=root / "state",
        socket=root / "d.sock",
        log_file=root / "musicd.log",
        torn_lines_ok=torn_lines_ok,
        ready_timeout=ready_timeout,
    )
    try:
        yield d
    finally:
        d.kill()
        if made and not os.environ.get("MUSICD_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
