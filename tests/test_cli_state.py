"""`musicd import-cache` and `musicd export snapshot`, as a user runs them."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.support import daemon_env

pytestmark = pytest.mark.timeout(60)


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
        d.start()
        d.wait_log("snapshot_built")
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
        d.start()
        d.wait_log("snapshot_built")
        out = d.root / "snapshot.json"
        done = musicd("export", "snapshot", str(out), "--config", str(d.config_path))
        assert done.returncode == 0, done.stderr
        data = orjson.loads(out.read_bytes())
        assert data["fields"][0] == "persistent_id" and len(data["tracks"]) == 39
        assert data["seq"] >= 1 and len(data["epoch"]) == 32
        piped = musicd("export", "snapshot", "--config", str(d.config_path))
        assert orjson.loads(piped.stdout)["tracks"] == data["tracks"]
        assert d.stop()[0] == 0
