"""process.py: the daemon's process-wide policy, set once at start-up and not by an import."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon import process
from daemon.control.endpoint import FD_RESERVE
from daemon.control.server import Limits
from daemon.logs import stop_logging
from tests.support import daemon_env


class FakeLimits:
    """RLIMIT_NOFILE as resource.getrlimit/setrlimit see it, without touching the real one."""

    def __init__(self, soft: int, hard: int) -> None:
        self.soft, self.hard = soft, hard
        self.calls: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.calls.append(limits)
        self.soft, self.hard = limits


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> FakeLimits:
    fake = FakeLimits(soft=256, hard=4096)
    monkeypatch.setattr(process.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(process.resource, "setrlimit", fake.setrlimit)
    return fake


@pytest.fixture
def exit_hooks(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    registered: list[Callable[..., Any]] = []
    monkeypatch.setattr(process, "_exit_hook_registered", False)
    monkeypatch.setattr(process.atexit, "register", registered.append)
    return registered


def test_the_open_file_limit_is_raised_to_fit_the_servers_connections(
    limits: FakeLimits, exit_hooks: list[Callable[..., Any]]
) -> None:
    process.apply_process_policy()
    assert limits.calls == [(Limits().max_connections + FD_RESERVE, 4096)]


def test_the_open_file_limit_stops_at_the_hard_limit_and_is_never_lowered(
    limits: FakeLimits, exit_hooks: list[Callable[..., Any]]
) -> None:
    limits.hard = 300
    process.apply_process_policy(max_connections=1000)
    assert limits.calls == [(300, 300)]
    limits.soft = limits.hard = 100_000
    process.apply_process_policy(max_connections=1000)
    assert limits.soft == 100_000
    limits.soft = resource.RLIM_INFINITY
    process.apply_process_policy(max_connections=1000)
    assert limits.calls == [(300, 300)]


def test_a_refused_raise_leaves_the_limit_as_it_was(
    limits: FakeLimits, exit_hooks: list[Callable[..., Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(which: int, new: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(process.resource, "setrlimit", refuse)
    process.apply_process_policy(max_connections=1000)
    assert limits.soft == 256


def test_logs_are_flushed_at_exit_once_however_often_the_policy_is_applied(
    limits: FakeLimits, exit_hooks: list[Callable[..., Any]]
) -> None:
    process.apply_process_policy()
    process.apply_process_policy()
    assert exit_hooks == [stop_logging]
    assert len(limits.calls) == 1  # the second call found the limit raised already


def test_the_real_limit_fits_the_servers_connections_after_start_up() -> None:
    # In a child process, so that neither the raised limit nor the exit hook leaks into this one.
    # The child starts below what the server needs (macOS gives 256), so the raise must happen.
    script = (
        "import resource\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "from daemon.process import apply_process_policy\n"
        "apply_process_policy()\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    soft, hard = (int(n) for n in out.split())
    need = Limits().max_connections + FD_RESERVE
    assert soft == (need if hard == resource.RLIM_INFINITY else min(need, hard))


@pytest.mark.parametrize("module", ["daemon.logs", "daemon.process", "daemon.app"])
def test_importing_registers_no_exit_hook(module: str) -> None:
    script = (
        "import atexit, json\n"
        "hooks = []\n"
        "atexit.register = lambda fn, *a, **k: hooks.append(fn) or fn\n"
        f"import {module}\n"
        "print(json.dumps([f'{fn.__module__}.{fn.__qualname__}' for fn in hooks]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert not [hook for hook in json.loads(out) if hook.startswith("daemon")]


_FRAGMENTED_HEAP = """
from daemon.process import release_free_memory

def anon_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

# A full read's pattern: many small objects, a few of which outlive it, spread among them.
objects = [str(i) * 3 for i in range(1_500_000)]
survivors = objects[::500]
del objects
before = anon_kib()
release_free_memory()
print(before, anon_kib())
"""


@pytest.mark.skipif(
    not Path("/proc/self/status").exists() or not hasattr(ctypes.CDLL(None), "malloc_trim"),
    reason="measured with glibc's malloc_trim and /proc",
)
def test_release_free_memory_returns_the_pages_a_full_read_left_free() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FRAGMENTED_HEAP],
        env={**os.environ, "PYTHONMALLOC": "malloc"},
        capture_output=True,
        text=True,
        check=True,
    )
    before, after = map(int, done.stdout.split())
    # About 100 MiB were freed among the survivors; most of it goes back to the system.
    assert before - after > 50 * 1024, done.stdout


def test_release_free_memory_is_harmless_to_call_again() -> None:
    process.release_free_memory()
    process.release_free_memory()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/<pid>/environ")
@pytest.mark.parametrize(("given", "runs_with"), [("", "malloc"), ("pymalloc", "pymalloc")])
def test_musicd_run_replaces_itself_under_the_c_allocator_unless_one_is_chosen(
    given: str, runs_with: str
) -> None:
    with daemon_env() as d:
        d.start(extra_env={"PYTHONMALLOC": given})
        assert d.proc is not None
        environ = Path(f"/proc/{d.proc.pid}/environ").read_bytes().split(b"\0")
        assert f"PYTHONMALLOC={runs_with}".encode() in environ
        with d.client() as client:
            assert client.status()["pid"] == d.proc.pid  # the same process, replaced in place
