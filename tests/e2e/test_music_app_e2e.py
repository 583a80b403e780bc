"""The daemon with `library.source = "music-app"`, against a fake osascript on PATH."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from daemon.models import Track
from tests.fakes import FakeOsascript
from tests.support import DaemonProc, daemon_env, short_tempdir, wait_for, write_config

pytestmark = pytest.mark.timeout(90)

TRACKS = [
    Track(
        "0123456789ABCDEF",
        name="So What",
        artist="Miles Davis",
        album="Kind of Blue",
        year=1959,
        date_modified="2021-01-02T03:04:05Z",
        kind="MPEG audio file",
        track_type="File",
    ),
    Track(
        "FEDCBA9876543210",
        name="Jóga",
        artist="Björk",
        album="Homogenic",
        date_modified="2021-01-02T03:04:05Z",
        track_type="Remote",
    ),
    Track("00000000000000AA", name="Wild Is the Wind", artist="Nina Simone"),
]
DENIED = "x.js: execution error: Error: Not authorized to send Apple events to Music. (-1743)\n"


@dataclass
class MusicAppEnv:
    daemon: DaemonProc
    fake: FakeOsascript
    bundle: Path

    def music_app_saves(self) -> None:
        """What Music.app does after an edit: rewrite the database inside the bundle."""
        db = self.bundle / "Library.musicdb"
        db.write_bytes(db.read_bytes() + b".")


def _use_music_app(d: DaemonProc, bundle: Path) -> None:
    # daemon_env(library={...}) collides with write_config's `library` (path) parameter,
    # so the [library] section is written here: the bundle as its path, plus the source.
    config = write_config(d.root, bundle)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[library]\n", '[library]\nsource = "music-app"\n', 1))
    assert 'source = "music-app"' in config.read_text(encoding="utf-8")


@contextmanager
def music_app_env() -> Iterator[MusicAppEnv]:
    side = short_tempdir("musicd-m-")
    try:
        bundle = side / "Music Library.musiclibrary"
        bundle.mkdir()
        (bundle / "Library.musicdb").write_bytes(b"hfma")
        fake = FakeOsascript(side)
        fake.serve(TRACKS)
        with daemon_env() as d:
            _use_music_app(d, bundle)
            yield MusicAppEnv(d, fake, bundle)
    finally:
        shutil.rmtree(side, ignore_errors=True)


def test_music_app_edits_reach_the_log_and_the_snapshot() -> None:
    with music_app_env() as env:
        d = env.daemon
        d.start(extra_env=env.fake.env())
        built = d.wait_log("snapshot_built", timeout=20)
        assert built["tracks"] == 3
        d.wait_log("watch_started", path=str(env.bundle))

        mark = d.mark()
        edited = replace(
            TRACKS[0], album="Kind of Blue (Legacy Edition)", date_modified="2024-05-01T10:00:00Z"
        )
        added = Track("1111222233334444", name="Blue in Green", artist="Miles Davis")
        now = [edited, TRACKS[1], added]
        env.fake.serve(now)
        env.music_app_saves()
        event = d.wait_log("track_modified", after=mark)
        assert event["persistent_id"] == TRACKS[0].persistent_id
        assert event["changed"] == ["album", "date_modified"]
        assert event["old"]["album"] == "Kind of Blue"
        assert event["new"]["album"] == "Kind of Blue (Legacy Edition)"
        assert d.wait_log("track_added", after=mark)["name"] == "Blue in Green"
        assert d.wait_log("track_removed", after=mark)["name"] == "Wild Is the Wind"
        # The edit was read incrementally: only the changed and the new track were fetched.
        assert ["fetch", TRACKS[0].persistent_id, added.persistent_id] in env.fake.calls()

        def merged() -> bool:
            snap = d.snapshot_tracks()
            return set(snap) == {t.persistent_id for t in now} and snap[edited.persistent_id][
                "album"
            ] == ("Kind of Blue (Legacy Edition)")

        wait_for(merged, what="the tracks table with the edit")

        # Automation permission withdrawn: the reader's error is logged, nothing is lost.
        mark = d.mark()
        env.fake.configure(behaviour="stdout", stderr=DENIED, exit=1)
        env.music_app_saves()
        failure = d.wait_log("library_unreadable", after=mark)
        assert "Privacy & Security > Automation" in failure["reason"]
        assert not d.find_logs("track_removed", name="So What")

        mark = d.mark()
        env.fake.serve(now)
        env.music_app_saves()
        d.wait_log("library_readable_again", after=mark)
        finished = d.wait_log("scan_finished", after=mark)
        assert (finished["added"], finished["modified"], finished["removed"]) == (0, 0, 0)

        status, seconds = d.stop()
        assert status == 0, seconds


def test_music_app_not_running_at_start_is_read_once_it_runs() -> None:
    with music_app_env() as env:
        d = env.daemon
        env.fake.serve([], running=False)
        d.start(extra_env=env.fake.env())
        failure = d.wait_log("library_unreadable", timeout=20)
        assert "Music.app is not running" in failure["reason"]

        mark = d.mark()
        env.fake.serve(TRACKS)
        env.music_app_saves()  # Music.app opens its library when it starts
        built = d.wait_log("snapshot_built", after=mark)
        assert built["tracks"] == 3
        status, _ = d.stop()
        assert status == 0


def test_music_app_ids_travel_with_each_track_and_find_it() -> None:
    with music_app_env() as env:
        d = env.daemon
        numbered = [
            replace(t, music_id=100 + n, database_id=5000 + n) for n, t in enumerate(TRACKS)
        ]
        env.fake.serve(numbered)
        d.start(extra_env=env.fake.env())
        d.wait_log("snapshot_built", timeout=20)
        with d.client() as client:
            found = client.track(music_id=101)
            assert found is not None and found["persistent_id"] == TRACKS[1].persistent_id
            assert found["database_id"] == 5001 and found["track_id"] is None
            by_database_id = client.track(database_id=5002)
            assert by_database_id is not None and by_database_id["name"] == "Wild Is the Wind"
            # In persistent id order, as every page.
            listed = client.tracks_list(by="music_id", ids=[100, 102], fields=["name"])
            assert [t["name"] for t in listed["tracks"]] == ["Wild Is the Wind", "So What"]
        d.stop()
