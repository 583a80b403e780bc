"""Helpers shared by the tests: library files, a real daemon subprocess, deadline waits."""

from __future__ import annotations

import os
import plistlib
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from daemon.models import TRACK_FIELDS

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures" / "real-libraries"


def sample_library_bytes() -> bytes:
    return (resources.files("daemon") / "data" / "sample_library.xml").read_bytes()


def short_tempdir(prefix: str = "musicd-t-") -> Path:
    """A temp dir with a short path: Unix socket paths must stay under 104 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def load_plist(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        data: dict[str, Any] = plistlib.load(fh)
    return data


def save_plist(path: Path, data: dict[str, Any], *, by_rename: bool = False) -> None:
    """Write a library file in place, or as editors and Music.app do: temp file + rename."""
    payload = plistlib.dumps(data, sort_keys=False)
    if by_rename:
        tmp = path.with_name(f".{path.name}.saving")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    else:
        with path.open("r+b" if path.exists() else "wb") as fh:
            fh.write(payload)
            fh.truncate()


def edit_tracks(
    path: Path, edit: Callable[[dict[str, dict[str, Any]]], None], *, by_rename: bool = False
) -> None:
    data = load_plist(path)
    edit(data["Tracks"])
    save_plist(path, data, by_rename=by_rename)


def find_track(tracks: dict[str, dict[str, Any]], **match: Any) -> dict[str, Any]:
    for track in tracks.values():
        if all(track.get(k) == v for k, v in match.items()):
            return track
    raise KeyError(match)


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


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
    _log_pos: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)

    def start(
        self,
        *,
        wait_ready: bool = True,
        extra_env: dict[str, str] | None = None,
        user: str | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        """Start the daemon, as `user` and under `wrapper` (a command prefix) when given: a
        test running as root needs a daemon that file permissions can refuse."""
        env = {**os.environ, **(extra_env or {})}
        env.pop("MUSICD_CONFIG", None)
        mark = self.mark()
        # Output goes to files, not pipes: a pipe nobody drains would block the daemon.
        with (
            (self.root / "stdout.txt").open("ab") as out,
            (self.root / "stderr.txt").open("ab") as err,
        ):
            self.proc = subprocess.Popen(
                [
                    *(wrapper or []),
                    sys.executable,
                    *("-m", "daemon", "run", "--config", str(self.config_path)),
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
                user=user,
                group=None if user is None else pwd.getpwnam(user).pw_gid,
                extra_groups=None if user is None else [],
            )
        if wait_ready:
            # This start's line, not an earlier run's.
            self.wait_log("daemon_started", timeout=20, after=mark)

    def logs(self) -> list[dict[str, Any]]:
        """Every log entry so far (JSON lines of the log file and its rotations)."""
        if not self.log_file.exists():
            return self.seen
        with self.log_file.open("rb") as fh:
            fh.seek(self._log_pos)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            if line.strip():
                self.seen.append(orjson.loads(line))
        self._log_pos += end
        return self.seen

    def find_logs(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.logs()
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def wait_log(
        self, event: str, timeout: float = 10.0, after: int = 0, **match: Any
    ) -> dict[str, Any]:
        """Wait for the first log entry `event` (with `match`) at index >= `after`."""

        def found() -> dict[str, Any] | None:
            self._check_alive(event)
            for i, e in enumerate(self.logs()):
                if (
                    i >= after
                    and e.get("event") == event
                    and all(e.get(k) == v for k, v in match.items())
                ):
                    return e
            return None

        result: dict[str, Any] = wait_for(found, timeout, what=f"log event {event} {match}")
        return result

    def mark(self) -> int:
        return len(self.logs())

    def _check_alive(self, waiting_for: str) -> None:
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def snapshot_tracks(self) -> dict[str, dict[str, Any]]:
        """The tracks table as another program reads it (read-only, while the daemon runs)."""
        return db_tracks(self.state_dir)

    def cache_entries(self) -> list[dict[str, Any]]:
        return db_cache_entries(self.state_dir)


def _db_query(state_dir: Path, sql: str) -> list[sqlite3.Row]:
    path = state_dir / "musicd.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def db_tracks(state_dir: Path) -> dict[str, dict[str, Any]]:
    rows = _db_query(state_dir, f"SELECT {', '.join(TRACK_FIELDS)} FROM tracks ORDER BY rowid")
    tracks = {}
    for row in rows:
        track = dict(row)
        track["compilation"] = bool(track["compilation"])
        track["disabled"] = bool(track["disabled"])
        tracks[track["persistent_id"]] = track
    return tracks


def db_meta(state_dir: Path) -> dict[str, Any]:
    return {
        row["key"]: orjson.loads(row["value"]) for row in _db_query(state_dir, "SELECT * FROM meta")
    }


def db_cache_entries(state_dir: Path) -> list[dict[str, Any]]:
    """Every API cache row, with the JSON columns decoded (expired ones included)."""
    rows = _db_query(
        state_dir,
        "SELECT artist, album, source, success, data, metadata, created_at, expires_at "
        "FROM api_cache",
    )
    entries = []
    for row in rows:
        entry = dict(row)
        entry["success"] = bool(entry["success"])
        entry["data"] = orjson.loads(entry["data"]) if entry["data"] is not None else None
        entry["metadata"] = orjson.loads(entry["metadata"])
        entries.append(entry)
    return entries


def db_seed_cache(state_dir: Path, entries: list[dict[str, Any]]) -> None:
    """Put cache entries (dicts like `cache_entries` returns) into a database, creating it."""
    from daemon.stores import cache
    from daemon.stores.database import open_database

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = open_database(state_dir)
    try:
        db.writer.execute("BEGIN IMMEDIATE")
        cache.put_many(
            db.writer,
            [
                cache.CachedApiResult(
                    e["artist"],
                    e["album"],
                    cache.normalize_source(e["source"]),
                    bool(e["success"]),
                    e.get("data"),
                    e.get("metadata") or {},
                    float(e["created_at"]),
                    e.get("expires_at"),
                )
                for e in entries
            ],
        )
        db.writer.execute("COMMIT")
    finally:
        db.close()


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
    library_bytes: bytes | None = None, **sections: dict[str, Any]
) -> Iterator[DaemonProc]:
    """A temp dir with a library, a config and (not yet started) daemon; cleaned up after."""
    root = short_tempdir()
    library = root / "lib" / "Library.xml"
    library.parent.mkdir()
    library.write_bytes(library_bytes if library_bytes is not None else sample_library_bytes())
    cfg = write_config(root, library, **sections)
    d = DaemonProc(
        root=root,
        config_path=cfg,
        library=library,
        state_dir=root / "state",
        socket=root / "d.sock",
        log_file=root / "musicd.log",
    )
    try:
        yield d
    finally:
        d.kill()
        shutil.rmtree(root, ignore_errors=True)
