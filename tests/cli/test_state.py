"""`musicd import-cache` and `musicd export snapshot`, as a user runs them."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.support import daemon_env, umask, write_config

pytestmark = pytest.mark.timeout(60)


ORIGINAL = {"artist": "Miles Davis", "album": "Kind of Blue", "year": "1959",
            "source": "musicbrainz", "timestamp": 1_700_000_000, "ttl": None, "metadata": {},
            "api_response": {"id": "a"}}  # fmt: skip


def musicd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], capture_output=True, text=True, timeout=30
    )


def test_import_cache_reports_counts_and_the_daemon_serves_the_entries() -> None:
    with daemon_env() as d:
        original = {
            "h1": {"artist": "Miles Davis", "album": "Kind of Blue", "year": "1959",
                   "source": "musicbrainz", "timestamp": 1_700_000_000, "ttl": None,
                   "metadata": {}, "api_response": {"id": "a"}},
            "h2": {"artist": "", "album": "X", "year": "1", "source": "discogs",
                   "timestamp": 1},
        }  # fmt: skip
        path = d.root / "cache.json"
        path.write_bytes(orjson.dumps(original))
        done = musicd("import-cache", str(path), "--config", str(d.config_path), "--json")
        assert done.returncode == 0, done.stderr
        report = orjson.loads(done.stdout)
        assert report["imported"] == 1 and report["skipped"] == 1
        assert report["skipped_by_reason"] == {"empty or missing artist/album": 1}
        d.start_built()
        got = musicd("cache", "get", "miles davis", "kind of blue", "musicbrainz", "--json",
                     "--config", str(d.config_path))  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert orjson.loads(got.stdout)["data"]["year"] == "1959"
        assert d.stop()[0] == 0


@pytest.mark.parametrize(
    ("content", "status", "text"),
    [(None, 66, "does not exist"), (b"{oops", 65, "is not JSON"), (b"[1]", 65, "not an ApiCache")],
)
def test_import_cache_refuses_what_it_cannot_read_in_one_line(
    content: bytes | None, status: int, text: str
) -> None:
    with daemon_env() as d:
        path = d.root / "cache.json"
        if content is not None:
            path.write_bytes(content)
        done = musicd("import-cache", str(path), "--config", str(d.config_path))
        assert done.returncode == status
        assert text in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_export_snapshot_writes_every_track_while_the_daemon_runs() -> None:
    with daemon_env() as d:
        d.start_built()
        out = d.root / "snapshot.json"
        done = musicd("export", "snapshot", str(out), "--config", str(d.config_path))
        assert done.returncode == 0, done.stderr
        data = orjson.loads(out.read_bytes())
        assert data["fields"][0] == "persistent_id" and len(data["tracks"]) == 39
        assert data["seq"] >= 1 and len(data["epoch"]) == 32
        piped = musicd("export", "snapshot", "--config", str(d.config_path))
        assert orjson.loads(piped.stdout)["tracks"] == data["tracks"]
        assert d.stop()[0] == 0


def test_export_snapshot_gives_the_position_tracks_list_gives_after_an_import() -> None:
    with daemon_env() as d:
        # Old state files whose subscribers saw seqs up to 42; the merger never ran here.
        d.state_dir.mkdir(mode=0o700)
        (d.state_dir / "snapshot.meta.json").write_bytes(orjson.dumps({"last_seq": 42}))
        path = d.root / "cache.json"
        path.write_bytes(orjson.dumps({"h1": ORIGINAL}))
        made = musicd("import-cache", str(path), "--config", str(d.config_path))
        assert made.returncode == 0, made.stderr
        done = musicd("export", "snapshot", "--config", str(d.config_path))
        assert done.returncode == 0, done.stderr
        assert orjson.loads(done.stdout)["seq"] == 42


def test_import_cache_before_the_first_run_opens_the_database_as_the_daemon_does() -> None:
    with daemon_env() as d, umask(0o022):
        # Old JSON state files of an earlier version wait in the state dir.
        d.state_dir.mkdir(mode=0o700)
        entry = {"artist": "Bill Evans", "album": "Sunday at the Village Vanguard",
                 "source": "discogs", "success": True, "data": {"year": 1961}, "metadata": {},
                 "created_at": 1_700_000_000.0, "expires_at": None}  # fmt: skip
        (d.state_dir / "api_cache.json").write_bytes(
            orjson.dumps({"version": 1, "entries": [entry]})
        )
        path = d.root / "cache.json"
        path.write_bytes(orjson.dumps({"h1": ORIGINAL}))
        done = musicd("import-cache", str(path), "--config", str(d.config_path))
        assert done.returncode == 0, done.stderr
        db = d.state_dir / "musicd.db"
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        # The old state files were imported by this first opener, and set aside.
        assert [p.name.split(".imported-")[0] for p in d.state_dir.glob("*.imported-*")] == [
            "api_cache.json"
        ]
        d.start_built()
        for name in ("musicd.db", "musicd.db-wal", "musicd.db-shm"):
            assert stat.S_IMODE((d.state_dir / name).stat().st_mode) == 0o600, name
        assert sorted(e["artist"] for e in d.cache_entries()) == ["Bill Evans", "Miles Davis"]
        assert d.stop()[0] == 0


def test_a_database_readable_by_others_is_made_owner_only() -> None:
    with daemon_env() as d:
        d.start_built()
        assert d.stop()[0] == 0
        db = d.state_dir / "musicd.db"
        db.chmod(0o644)
        done = musicd("export", "snapshot", "--config", str(d.config_path))
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(db.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("where", "status", "text"),
    [
        ("missing/snapshot.json", 73, "check that"),
        (".", 73, "is a directory"),
        ("/dev/full", 74, "No space left on device"),  # a device is written, never replaced
        ("-", 74, "No space left on device"),  # standard output on /dev/full
    ],
)
def test_export_path_errors_are_one_line_and_an_exit_status(
    where: str, status: int, text: str
) -> None:
    with daemon_env() as d, open("/dev/full", "wb") as full:
        d.start_built()
        target = () if where == "-" else (where if where.startswith("/") else str(d.root / where),)
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "export", "snapshot", *target,
             "--config", str(d.config_path)],
            stdout=full if where == "-" else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )  # fmt: skip
        assert done.returncode == status, done.stderr
        assert text in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not list(d.root.glob(".*.tmp"))
        assert Path("/dev/full").is_char_device()
        assert d.stop()[0] == 0


def test_cli_path_errors_are_one_line_and_an_exit_status() -> None:
    with daemon_env() as d:
        blocker = d.root / "a-file"
        blocker.write_text("")
        cache_file = d.root / "cache.json"
        cache_file.write_bytes(b"{}")
        cases = [
            (("import-cache", str(d.root), "--config", str(d.config_path)), 66),
            (("import-cache", str(cache_file), "--config", str(d.config_path)), 0),
            (("logs", "--config", str(d.config_path)), 66),
            (("check-config", "--config", str(d.root)), 78),
        ]
        for args, status in cases:
            done = musicd(*args)
            assert done.returncode == status, (args, done.stderr)
            assert "Traceback" not in done.stderr
            assert len(done.stderr.strip().splitlines()) <= 1, (args, done.stderr)
        # A state dir that cannot be made: 73 for the commands that open the database.
        bad = write_config(d.root, d.library, state={"dir": str(blocker / "state")})
        for args in (("import-cache", str(cache_file)), ("export", "snapshot")):
            done = musicd(*args, "--config", str(bad))
            assert done.returncode == 73, (args, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
