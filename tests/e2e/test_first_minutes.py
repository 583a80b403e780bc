"""What a new user meets first, against real daemons: the demo, hints, progress, wording.

Each test is named after the trap it guards against; the CLI runs as `python -m daemon`.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.test_music_app_e2e import music_app_env
from tests.support import (
    daemon_env,
    find_track,
    set_track_keys,
    short_tempdir,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)


def musicd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], capture_output=True, text=True, timeout=30
    )


def sh(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Paste `line` into a shell, as a person would, in another directory."""
    return subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=30, cwd=cwd)


def test_demo_commands_work_when_pasted_and_prove_the_invalidation() -> None:
    elsewhere = short_tempdir()
    out, err = elsewhere / "out.txt", elsewhere / "err.txt"
    env = {k: v for k, v in os.environ.items() if k != "MUSICD_CONFIG"}
    try:
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run", "--demo"],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=elsewhere,
            )
        try:
            text = wait_for(
                lambda: "Stop it with Ctrl-C" in out.read_text() and out.read_text(),
                timeout=20,
                what="the demo's instructions",
            )
            root = Path(re.search(r"sample library in (\S+)", text).group(1))  # type: ignore[union-attr]
            assert root.is_dir() and os.path.realpath(root) == str(root)
            config = root / "config.toml"
            lines = [line.strip() for line in text.splitlines()]
            cache_get = next(line for line in lines if " cache get " in line)
            edit = next(line for line in lines if line.startswith(f"{sys.executable} -c"))
            album = next(line for line in lines if " tracks album " in line)
            status = next(line for line in lines if line.endswith(f"status --config {config}"))
            assert f"--config {config}" in cache_get
            assert cache_get.startswith(f"{sys.executable} -m daemon cache get")

            hit = wait_for(
                lambda: "exit status 0" in (r := sh(cache_get, elsewhere)).stdout and r,
                what="the seeded answer",
            )
            assert "musicbrainz answer for Miles Davis - Kind of Blue" in hit.stdout
            assert sh(status, elsewhere).returncode == 0
            assert sh(edit, elsewhere).returncode == 0
            wait_for(
                lambda: "exit status 1" in sh(cache_get, elsewhere).stdout,
                what="the answer dropped after the rename",
            )
            renamed = wait_for(
                lambda: (r := sh(album, elsewhere)).returncode == 0 and r,
                what="the renamed album in the snapshot",
            )
            assert "So What" in renamed.stdout
            # The foreground log names the track and says what changed.
            logged = wait_for(
                lambda: [line for line in err.read_text().splitlines() if "track_modified" in line],
                what="track_modified on the console",
            )
            assert any("Miles Davis - So What" in line for line in logged)
            assert any("Kind of Blue (Legacy Edition)" in line for line in logged)
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(15) == 0
        assert not root.exists(), "the demo leaves its temp dir behind"
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


@pytest.mark.slow
def test_status_shows_a_scan_in_progress_while_a_slow_reader_runs() -> None:
    with music_app_env() as env:
        d = env.daemon
        gate = d.root / "music-app-answers"
        env.fake.configure(
            library={"tracks": [t.to_row() for t in env_tracks()]}, wait_for=str(gate)
        )
        d.start(extra_env=env.fake.env())
        cfg = ("--config", str(d.config_path))

        def scanning() -> dict[str, Any] | None:
            result = musicd("status", "--json", *cfg)
            assert result.returncode == 0, result.stderr
            scan: dict[str, Any] | None = orjson.loads(result.stdout)["scan_in_progress"]
            return scan

        scan = wait_for(scanning, what="scan_in_progress in status")
        assert scan["reason"] == "startup"
        assert scan["started_at"] <= time.time()
        assert scan["elapsed_seconds"] >= 0
        human = musicd("status", *cfg)
        assert "  scanning    since " in human.stdout
        assert re.search(r"  scanning    since .* ago\) \(startup\)", human.stdout)
        assert "last scan   never\n" in human.stdout

        # `rescan` on a terminal waits behind the running scan and shows its progress line.
        with Terminal("rescan", *cfg) as term:
            term.wait_for(b"scanning [")
            gate.touch()
            output = term.finish()
        assert b"rescanned in " in output
        d.wait_log("snapshot_built", timeout=30)
        wait_for(lambda: scanning() is None, what="the scan to be over")
        assert "scanning" not in musicd("status", *cfg).stdout
        status, _ = d.stop()
        assert status == 0


class Terminal:
    """`musicd ARGS` with a pseudo-terminal as its stdout and stderr."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.output = b""

    def __enter__(self) -> Terminal:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        return self

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def wait_for(self, text: bytes, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} not in {self.output[-500:]!r}"
            if not self._read(0.2):
                raise AssertionError(f"exited before {text!r}: {self.output[-500:]!r}")

    def finish(self, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while self._read(0.2) or self.proc.poll() is None:
            assert time.monotonic() < deadline, self.output[-500:]
        assert self.proc.wait(5) == 0, self.output[-500:]
        return self.output

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def env_tracks() -> list[Any]:
    from tests.e2e.test_music_app_e2e import TRACKS

    return TRACKS


def test_cache_put_refuses_blank_names_and_unknown_sources() -> None:
    with daemon_env(cache={"sources": ["allmusic"]}) as d:
        d.start()
        cfg = ("--config", str(d.config_path))
        blank = musicd("cache", "put", " ", "Kind of Blue", "musicbrainz", *cfg)
        assert blank.returncode == 1
        assert "param 'artist' is invalid: must not be blank" in blank.stderr
        no_album = musicd("cache", "put", "Miles Davis", "", "musicbrainz", *cfg)
        assert no_album.returncode == 1 and "'album'" in no_album.stderr
        typo = musicd("cache", "put", "Miles Davis", "Kind of Blue", "musicbrainzz", *cfg)
        assert typo.returncode == 1
        assert (
            "unknown source 'musicbrainzz'; known sources: musicbrainz, discogs, lastfm, "
            "spotify, itunes, allmusic" in typo.stderr
        )
        added = musicd("cache", "put", "Miles Davis", "Kind of Blue", "AllMusic", *cfg)
        assert added.returncode == 0, added.stderr
        assert (
            musicd("cache", "get", "Miles Davis", "Kind of Blue", "allmusic", *cfg).returncode == 0
        )


def test_wording_counts_times_flush_and_ids_read_right() -> None:
    # No periodic flush in between: the test's `flush` is the one that writes.
    with daemon_env(state={"flush_interval_seconds": 3600}) as d:
        d.start_built()
        cfg = ("--config", str(d.config_path))
        # Global options before the command.
        status = musicd("--config", str(d.config_path), "status")
        assert status.returncode == 0, status.stderr
        assert "(0 subscribers, 1 connection)" in status.stdout
        assert re.search(r"last scan   .* ago\), took \d+(\.\d)? (ms|s)", status.stdout)

        failed = musicd("cache", "put", "Miles Davis", "Kind of Blue", "discogs", "--failed", *cfg)
        assert failed.returncode == 0
        got = musicd("cache", "get", "Miles Davis", "Kind of Blue", "discogs", *cfg)
        assert "(in 59 min" in got.stdout and "expires" in got.stdout
        assert "ms ago" not in got.stdout.split("expires", 1)[1]

        wrote = musicd("flush", *cfg)
        assert wrote.returncode == 0 and re.match(r"made \d+ commits? durable", wrote.stdout)
        again = musicd("flush", *cfg)
        assert again.stdout.startswith("nothing new to make durable"), again.stdout

        track = find_track(d.snapshot_tracks(), name="So What")
        lower = musicd("tracks", "get", track["persistent_id"].lower(), "--json", *cfg)
        assert lower.returncode == 0, lower.stderr
        assert orjson.loads(lower.stdout)["name"] == "So What"


def test_track_modified_log_names_the_track() -> None:
    with daemon_env() as d:
        d.start_built()
        mark = d.mark()

        set_track_keys(d.library, "So What", Album="Kind of Blue (Legacy Edition)")
        event = d.wait_log("track_modified", after=mark)
        assert event["track"] == "Miles Davis - So What"
        assert event["changed"] == ["album"]
