"""The `musicd` control commands as a person and a script use them, against a real daemon."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.client import MusicdClient
from tests.support import DaemonProc, daemon_env, edit_tracks, find_track, short_tempdir, wait_for

pytestmark = pytest.mark.timeout(60)


def musicd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], capture_output=True, text=True, timeout=timeout
    )


def test_status_for_people_and_for_scripts() -> None:
    with daemon_env() as d:
        d.start_built()
        human = musicd("status", "--config", str(d.config_path))
        assert human.returncode == 0, human.stderr
        assert d.proc is not None
        assert f"is running (pid {d.proc.pid}, up " in human.stdout
        assert "(xml): 39 tracks" in human.stdout
        assert str(d.socket) in human.stdout
        as_json = musicd("status", "--json", "--socket", str(d.socket))
        assert as_json.returncode == 0
        status = orjson.loads(as_json.stdout)
        assert status["pid"] == d.proc.pid and status["library"]["track_count"] == 39


@pytest.mark.parametrize("command", [["status"], ["stop"], ["cache", "clear"], ["subscribe"]])
def test_not_running_is_one_line_and_exit_3(command: list[str]) -> None:
    root = short_tempdir()
    try:
        result = musicd(*command, "--socket", str(root / "musicd.sock"))
    finally:
        root.rmdir()
    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "not running" in lines[0] and "-m daemon run" in lines[0]


def test_cache_and_tracks_commands_round_trip() -> None:
    with daemon_env() as d:
        d.start_built()
        cfg = ["--config", str(d.config_path)]
        put = musicd(
            "cache",
            "put",
            "Miles Davis",
            "Kind of Blue",
            "musicbrainz",
            "--data",
            '{"year": 1959}',
            "--metadata",
            '{"mbid": "x"}',
            *cfg,
        )
        assert put.returncode == 0 and "stored musicbrainz answer" in put.stdout
        got = musicd("cache", "get", "miles davis", "kind of blue", "musicbrainz", "--json", *cfg)
        assert orjson.loads(got.stdout)["data"] == {"year": 1959}
        miss = musicd("cache", "get", "Miles Davis", "Kind of Blue", "discogs", *cfg)
        assert miss.returncode == 1 and "no cached answer" in miss.stderr
        bad = musicd("cache", "put", "a", "b", "c", "--data", "{nope", *cfg)
        assert bad.returncode == 64 and "--data is not valid JSON" in bad.stderr
        album = musicd("tracks", "album", "Miles Davis", "Kind of Blue", *cfg)
        assert album.returncode == 0 and "So What" in album.stdout
        assert len(album.stdout.splitlines()) == 5
        invalidated = musicd("invalidate", "Miles Davis", "Kind of Blue", *cfg)
        assert "dropped 1 cached answer of" in invalidated.stdout
        stats = musicd("stats", *cfg)
        assert stats.returncode == 0 and "API cache: 0 entries" in stats.stdout


def read_line(pipe: Any, timeout: float) -> str:
    ready, _, _ = select.select([pipe], [], [], timeout)
    assert ready, f"no line within {timeout} s"
    line: str = pipe.readline()
    return line


def subscribed(d: DaemonProc) -> bool:
    with MusicdClient(d.socket) as client:
        return bool(client.status()["subscribers"] == 1)


def test_subscribe_prints_a_line_per_change_and_ctrl_c_exits_0() -> None:
    with daemon_env() as d:
        d.start_built()
        with subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daemon",
                "subscribe",
                "--type",
                "track_modified",
                "--config",
                str(d.config_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                wait_for(lambda: subscribed(d), what="the CLI's subscription")

                def retitle(tracks: dict[str, dict[str, Any]]) -> None:
                    find_track(tracks, Name="Jóga")["Name"] = "Jóga (String Version)"

                edit_tracks(d.library, retitle)
                line = read_line(proc.stdout, 10)
                assert "track_modified" in line
                assert "name: 'Jóga' -> 'Jóga (String Version)'" in line
                proc.send_signal(signal.SIGINT)
                assert proc.wait(10) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()


def test_stop_waits_until_the_daemon_is_gone_and_both_exit_0() -> None:
    with daemon_env() as d:
        d.start()
        assert d.proc is not None
        result = musicd("stop", "--config", str(d.config_path))
        assert result.returncode == 0, result.stderr
        assert f"musicd stopped (pid {d.proc.pid}" in result.stdout
        assert d.proc.wait(5) == 0
        assert not Path(d.socket).exists()
        again = musicd("stop", "--config", str(d.config_path))
        assert again.returncode == 3
        assert os.path.exists(d.state_dir / "musicd.db")
