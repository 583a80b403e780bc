"""Fault-injection helpers: synthetic libraries, a daemon with injectable faults, tallies.

The daemon is always the real `python -m daemon run` subprocess (tests/support.DaemonProc);
faults are injected only at process boundaries: signals, resource limits, file system state.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import orjson

from daemon.client import MusicdClient
from daemon.models import TRACK_FIELDS, normalize_name
from daemon.stores.schema import DB_FILE, SCHEMA_VERSION
from tests.support import DaemonProc, short_tempdir, wait_for, write_config

SOURCES = ("musicbrainz", "discogs", "lastfm", "spotify")


def soak_factor() -> int:
    """How many times the normal iterations to run: `MUSICD_SOAK=1` means 10, `=N` means N."""
    raw = os.environ.get("MUSICD_SOAK", "").strip()
    if not raw or raw == "0":
        return 1
    n = int(raw)
    return 10 if n == 1 else max(n, 1)


def iterations(base: int) -> int:
    return base * soak_factor()


# -- synthetic libraries -------------------------------------------------------------------


@dataclass
class SynthLibrary:
    """An in-memory library that renders to Apple plist XML the way Music.app writes it.

    Albums hold `per_album` tracks; album `a` is by "Artist {a % 97}" and is called
    "Album {a:05d}". Tracks are dicts keyed by their plist key names.
    """

    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def generate(cls, n_tracks: int, per_album: int = 10) -> SynthLibrary:
        lib = cls()
        for i in range(n_tracks):
            a = i // per_album
            pid = f"{0xA000000000000000 + i:016X}"
            lib.tracks[pid] = {
                "Track ID": 1000 + i,
                "Persistent ID": pid,
                "Name": f"Track {i:06d}",
                "Artist": artist_of(a),
                "Album Artist": artist_of(a),
                "Album": album_of(a),
                "Genre": "Jazz" if a % 3 else "Électronique",
                "Year": 1950 + a % 70,
                "Track Number": i % per_album + 1,
                "Disc Number": 1,
                "Total Time": 200_000 + i,
                "Date Added": "2023-03-01T12:01:00Z",
                "Date Modified": "2023-03-03T12:01:00Z",
                "Kind": "AAC audio file",
                "Track Type": "File",
                "Location": f"file:///Users/me/Music/{a:05d}/{i:06d}.m4a",
            }
        return lib

    def album_pids(self, artist: str, album: str) -> list[str]:
        return [
            pid
            for pid, t in self.tracks.items()
            if t.get("Artist") == artist and t.get("Album") == album
        ]

    def copy(self) -> SynthLibrary:
        return SynthLibrary({pid: dict(t) for pid, t in self.tracks.items()})

    def render(self, *, without_pid: set[str] | None = None) -> bytes:
        return render_plist(self.tracks.values(), without_pid=without_pid or set())

    def expected_rows(self) -> dict[str, dict[str, Any]]:
        """What the daemon's tracks table should hold for this library (`db_tracks` rows)."""
        return {pid: expected_track(t) for pid, t in self.tracks.items()}


def artist_of(a: int) -> str:
    return f"Artist {a % 97:02d}"


def album_of(a: int) -> str:
    return f"Album {a:05d}"


_KEEP = {
    "Persistent ID": "persistent_id",
    "Name": "name",
    "Artist": "artist",
    "Album Artist": "album_artist",
    "Album": "album",
    "Genre": "genre",
    "Year": "year",
    "Compilation": "compilation",
    "Disc Number": "disc_number",
    "Track Number": "track_number",
    "Date Added": "date_added",
    "Date Modified": "date_modified",
    "Kind": "kind",
    "Track Type": "track_type",
    "Disabled": "disabled",
}


def expected_track(t: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TRACK_FIELDS)
    row["compilation"] = False
    row["disabled"] = False
    for key, name in _KEEP.items():
        if key in t:
            row[name] = t[key]
    return row


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "<true/>" if value else "<false/>"
    if isinstance(value, int):
        return f"<integer>{value}</integer>"
    if isinstance(value, str) and value.endswith("Z") and value[:4].isdigit() and "T" in value:
        return f"<date>{value}</date>"
    return f"<string>{escape(str(value))}</string>"


def render_plist(
    tracks: Iterable[dict[str, Any]], *, without_pid: Collection[str] = (), extra: str = ""
) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
        '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        f'<plist version="1.0">\n{extra}<dict>\n'
        "\t<key>Major Version</key><integer>1</integer>\n"
        "\t<key>Application Version</key><string>1.4.6.32</string>\n"
        "\t<key>Tracks</key>\n\t<dict>\n"
    ]
    ids = []
    for t in tracks:
        ids.append(t["Track ID"])
        parts.append(f"\t\t<key>{t['Track ID']}</key>\n\t\t<dict>\n")
        for key, value in t.items():
            if key == "Persistent ID" and value in without_pid:
                continue
            parts.append(f"\t\t\t<key>{escape(key)}</key>{_value(value)}\n")
        parts.append("\t\t</dict>\n")
    parts.append("\t</dict>\n\t<key>Playlists</key>\n\t<array>\n\t\t<dict>\n")
    parts.append("\t\t\t<key>Name</key><string>Library</string>\n")
    parts.append("\t\t\t<key>Playlist Items</key>\n\t\t\t<array>\n")
    parts.extend(
        f"\t\t\t\t<dict><key>Track ID</key><integer>{i}</integer></dict>\n" for i in ids[:2000]
    )
    parts.append("\t\t\t</array>\n\t\t</dict>\n\t</array>\n</dict>\n</plist>\n")
    return "".join(parts).encode("utf-8")


def write_library(path: Path, data: bytes, *, by_rename: bool = True) -> None:
    """Write the library as Music.app does (temp file + rename), or in place."""
    if by_rename:
        tmp = path.with_name(f".{path.name}.saving-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:
        with path.open("r+b" if path.exists() else "wb") as fh:
            fh.write(data)
            fh.truncate()


def cache_entry(artist: str, album: str, source: str, payload: int = 0) -> dict[str, Any]:
    """A cached answer as `tests.support.db_seed_cache` takes it."""
    return {
        "artist": artist,
        "album": album,
        "source": source,
        "success": True,
        "data": {"year": 1959, "pad": "x" * payload},
        "metadata": {},
        "created_at": 1_700_000_000.0,
        "expires_at": None,
    }


def album_key(artist: str, album: str) -> tuple[str, str]:
    return (normalize_name(artist), normalize_name(album))


# -- the daemon ----------------------------------------------------------------------------


class FaultyDaemon(DaemonProc):
    """DaemonProc that can start under resource limits and tolerates torn log lines.

    A kill -9 can cut the last log line short; the restarted daemon then appends to it. Such
    a line is counted in `torn_log_lines`, not fatal to the test.
    """

    torn_log_lines: int = 0
    preexec: Callable[[], None] | None = None
    # A command prefix, e.g. NO_INOTIFY: the daemon execs from it (same pid).
    wrapper: list[str] | None = None

    def start(self, *, wait_ready: bool = True, extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **(extra_env or {})}
        env.pop("MUSICD_CONFIG", None)
        mark = self.mark()  # a restart waits for its own daemon_started, not an earlier one
        with (
            (self.root / "stdout.txt").open("ab") as out,
            (self.root / "stderr.txt").open("ab") as err,
        ):
            self.proc = subprocess.Popen(
                [
                    *(self.wrapper or []),
                    sys.executable,
                    "-m",
                    "daemon",
                    "run",
                    "--config",
                    str(self.config_path),
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
                preexec_fn=self.preexec,
            )
        if wait_ready:
            self.wait_log("daemon_started", timeout=30, after=mark)

    def logs(self) -> list[dict[str, Any]]:
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
                self.torn_log_lines += 1
        self._log_pos += end
        return self.seen

    def client(self, timeout: float = 30.0) -> MusicdClient:
        return MusicdClient(self.socket, timeout=timeout)

    def wait_socket(self, timeout: float = 30.0) -> None:
        def answers() -> bool:
            self._check_alive("socket")
            try:
                with self.client(timeout=2) as c:
                    c.ping()
            except Exception:
                return False
            return True

        wait_for(answers, timeout, what="daemon answering on its socket")

    def rss_kib(self) -> int:
        return _status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        return _status_kib(self.pid, "VmHWM")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def events_since(self, mark: int, *names: str) -> list[dict[str, Any]]:
        return [e for e in self.logs()[mark:] if e.get("event") in names]


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


# Runs the daemon in a user namespace of its own whose inotify instance limit is 0, so its
# watcher cannot start (as when the user's inotify instances are used up) without touching
# the limits of anything else on the machine.
NO_INOTIFY = [
    "unshare",
    "--user",
    "--map-root-user",
    "sh",
    "-c",
    'echo 0 > /proc/sys/user/max_inotify_instances && exec "$@"',
    "sh",
]


def no_inotify_supported() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*NO_INOTIFY, "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def ignore_sigxfsz_and_limit(max_bytes: int) -> Callable[[], None]:
    """A preexec_fn: file writes past `max_bytes` fail with EFBIG instead of killing."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.RLIM_INFINITY))

    return apply


@contextmanager
def faulty_env(
    library_bytes: bytes, *, root: Path | None = None, **sections: dict[str, Any]
) -> Iterator[FaultyDaemon]:
    """Like tests.support.daemon_env, with a FaultyDaemon and info-level, unrotated logs."""
    root = root or short_tempdir("musicd-r-")
    library = root / "lib" / "Library.xml"
    library.parent.mkdir(parents=True, exist_ok=True)
    library.write_bytes(library_bytes)
    log = {"level": "info", "max_bytes": 1 << 30}
    log.update(sections.pop("log", {}))
    # The cases make up their own source names to tell their entries apart.
    cache = {"sources": ["*"], **sections.pop("cache", {})}
    cfg = write_config(root, library, log=log, cache=cache, **sections)
    d = FaultyDaemon(
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
        if not os.environ.get("MUSICD_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def database_problems(state_dir: Path) -> list[str]:
    """Check the state database as the next start would find it; return the problems found.

    The files are copied first (the database and its WAL, as a kill left them), so the check
    neither replays nor checkpoints the WAL the daemon itself must recover from.
    """
    problems: list[str] = []
    problems.extend(f"moved aside: {p.name}" for p in sorted(state_dir.glob("*.corrupt-*")))
    problems.extend(f"old state file: {p.name}" for p in sorted(state_dir.glob("*.json")))
    path = state_dir / DB_FILE
    if not path.exists():
        return [*problems, f"{DB_FILE} is missing"]
    with tempfile.TemporaryDirectory(prefix="musicd-check-") as tmp:
        copy = Path(tmp) / DB_FILE
        shutil.copyfile(path, copy)
        wal = path.with_name(DB_FILE + "-wal")
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(wal, copy.with_name(DB_FILE + "-wal"))
        try:
            conn = sqlite3.connect(copy)
            try:
                check = conn.execute("PRAGMA quick_check").fetchall()
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as err:
            return [*problems, f"{DB_FILE} does not open: {err}"]
    if check != [("ok",)]:
        problems.append(f"{DB_FILE} quick_check: {check[:3]}")
    if version != SCHEMA_VERSION:
        problems.append(f"{DB_FILE} user_version {version}")
    return problems


def journal_seqs(state_dir: Path) -> list[int]:
    """The seqs of the journal's rows, in rowid order (read-only, daemon running or not)."""
    conn = sqlite3.connect(f"{(state_dir / DB_FILE).as_uri()}?mode=ro", uri=True)
    try:
        return [int(r[0]) for r in conn.execute("SELECT seq FROM journal ORDER BY rowid")]
    finally:
        conn.close()


def settle(c: MusicdClient) -> None:
    """Checkpoint, then wait until the journal's consumers have applied every recorded event
    (the tracks table and the cache follow a scan's commit a moment later)."""
    c.flush()
    wait_for(lambda: c.status()["pending_events"] == 0, 20, what="consumers caught up")


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 1)
