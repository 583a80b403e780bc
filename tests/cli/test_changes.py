"""`musicd changes`, `musicd cursor` and `musicd tracks list` against a real daemon."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import orjson
import pytest

from tests.cli.test_control import musicd, read_line
from tests.support import daemon_env, edit_tracks, find_track, wait_for

pytestmark = pytest.mark.timeout(60)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def test_changes_cursor_and_tracks_list_commands() -> None:
    with daemon_env() as d:
        d.start_built()
        cfg = ["--config", str(d.config_path)]
        listed = musicd("tracks", "list", "--all", "--limit", "10", "--json", *cfg)
        assert listed.returncode == 0, listed.stderr
        lines = json_lines(listed.stdout)
        assert len(lines) == 40 and lines[-1]["next"] is None
        start = lines[-1]["cursor"]
        first = musicd("tracks", "list", "--limit", "5", *cfg)
        assert len(first.stdout.splitlines()) == 5 and "more after" in first.stderr

        committed = musicd("cursor", "commit", "tagger", start, *cfg)
        assert committed.returncode == 0 and f"tagger now at {start}" in committed.stdout

        def rename(tracks: dict[str, dict[str, Any]]) -> None:
            find_track(tracks, Name="So What")["Name"] = "So What (Live)"

        edit_tracks(d.library, rename)

        def changes() -> list[dict[str, Any]]:
            out = musicd(
                "changes", "--consumer", "tagger", "--type", "track_modified", "--json", *cfg
            )
            return json_lines(out.stdout)

        wait_for(lambda: len(changes()) == 2, what="the rename in `musicd changes`")
        event, position = changes()
        assert event["new"] == {"name": "So What (Live)"} and position["resync"] is False
        done = musicd("changes", "--consumer", "tagger", "--commit", "--json", *cfg)
        assert done.returncode == 0 and "So What (Live)" in done.stdout
        got = orjson.loads(musicd("cursor", "get", "tagger", "--json", *cfg).stdout)
        assert got["cursor"] == json_lines(done.stdout)[-1]["cursor"]
        back = musicd("cursor", "commit", "tagger", start, *cfg)
        assert back.returncode == 1 and "stays at" in back.stdout

        nothing = musicd("changes", "--json", *cfg)
        assert json_lines(nothing.stdout)[-1]["resync"] is True
        bad = musicd("changes", "--since", "nonsense", *cfg)
        assert bad.returncode != 0 and "not a musicd cursor" in bad.stderr
        usage = musicd("changes", "--commit", *cfg)
        assert usage.returncode == 64
        reserved = musicd("cursor", "get", "musicd.snapshot", *cfg)
        assert reserved.returncode != 0 and "reserved" in reserved.stderr


def test_changes_follow_replays_then_prints_live_changes() -> None:
    with daemon_env() as d:
        d.start_built()
        cfg = ["--config", str(d.config_path)]
        start = json_lines(musicd("changes", "--json", *cfg).stdout)[-1]["cursor"]
        edit_tracks(d.library, lambda t: find_track(t, Name="Hunter").update(Name="Hunter (1)"))
        d.wait_log("track_modified")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daemon",
                "changes",
                "--since",
                start,
                "--follow",
                "--json",
                "--type",
                "track_modified",
                *cfg,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert orjson.loads(read_line(proc.stdout, 20))["new"] == {"name": "Hunter (1)"}
            edit_tracks(d.library, lambda t: find_track(t, Name="Jóga").update(Name="Jóga (2)"))
            assert orjson.loads(read_line(proc.stdout, 20))["new"] == {"name": "Jóga (2)"}
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.communicate()


def test_an_event_line_names_the_program_that_announced_it_and_only_then() -> None:
    from daemon.cli.changes import describe_event

    event: dict[str, Any] = {
        "type": "track_removed",
        "seq": 7,
        "persistent_id": "P1",
        "name": "So What",
        "artist": "Miles Davis",
        "album": "Kind of Blue",
        "origin": None,
    }
    # Past the time of day, which may tick between the two lines.
    line = describe_event(event).split(" ", 1)[1]
    assert line == "#7 track_removed P1 Miles Davis - So What (Kind of Blue)"
    tagged = describe_event({**event, "origin": "genre-updater"}).split(" ", 1)[1]
    assert tagged == f"{line}  (by genre-updater)"
