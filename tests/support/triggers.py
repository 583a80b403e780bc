"""Triggers in tests: a daemon with a trigger whose command is a small script that records what
it was given (its stdin, its environment) and exits with the status a file says."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from tests.support.library import set_track_keys
from tests.support.runner import DaemonProc, daemon_env

RECORDER = """\
import json, os, pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
runs = out / "runs"
runs.mkdir(exist_ok=True)
if (out / "ignore_term").exists():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
record = {"env": dict(os.environ), "stdin": sys.stdin.read(), "pid": os.getpid()}
name = runs / f"{len(list(runs.glob('*.json'))):04d}.json"
name.with_suffix(".tmp").write_text(json.dumps(record))
name.with_suffix(".tmp").rename(name)
print("recorded", name.name)
print("to stderr", file=sys.stderr)
sleep = out / "sleep"
if sleep.exists():
    time.sleep(float(sleep.read_text()))
code = out / "exit_code"
sys.exit(int(code.read_text()) if code.exists() else 0)
"""

# Starts a helper that outlives nothing: a timeout must take it down with the command.
WITH_HELPER = """\
#!/bin/sh
sleep 300 &
echo $! > "$1/helper.pid"
sleep 300
"""


def trigger_table(**values: Any) -> str:
    return "\n[[triggers]]\n" + "".join(
        f"{key} = {orjson.dumps(value).decode()}\n" for key, value in values.items()
    )


@contextmanager
def trigger_daemon(**trigger: Any) -> Iterator[tuple[DaemonProc, Path]]:
    """A daemon with one trigger `t` running the recorder (unless `command` is given)."""
    with daemon_env() as d:
        out = d.root / "out"
        out.mkdir()
        (d.root / "recorder.py").write_text(RECORDER)
        values: dict[str, Any] = {
            "name": "t",
            "command": [sys.executable, str(d.root / "recorder.py"), str(out)],
            "settle_seconds": 0.5,
            "min_interval_seconds": 0,
            **trigger,
        }
        with d.config_path.open("a") as fh:
            fh.write(trigger_table(**values))
        yield d, out


def runs(out: Path) -> list[dict[str, Any]]:
    """What each run was given, in order."""
    return [orjson.loads(p.read_bytes()) for p in sorted((out / "runs").glob("*.json"))]


def delivered(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in run["stdin"].splitlines()]


def trigger_cursor(d: DaemonProc) -> int | None:
    conn = sqlite3.connect(f"file:{d.state_dir / 'musicd.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT seq FROM cursors WHERE consumer = 'trigger.t'").fetchone()
    finally:
        conn.close()
    return None if row is None else int(row[0])


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie nobody reaped yet does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def edit(d: DaemonProc, name: str, **keys: Any) -> None:
    mark = d.mark()
    set_track_keys(d.library, name, **keys)
    d.wait_log("scan_finished", after=mark, timeout=20)
