"""Write origins on a real daemon: a program announces a write (`writes.expect`), the library
file is edited for that track (standing in for Music.app), and the event carries the program's
name; a person's edit in between does not, and the announcement survives a restart."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from daemon.compat import expect_writes
from daemon.errors import RemoteError
from tests.cli.test_control import musicd
from tests.support import DaemonProc, daemon_env, edit_tracks, find_track, load_plist, wait_for

pytestmark = pytest.mark.timeout(60)

TRACK_TYPES = ("track_modified",)


def written_by_music_app(**keys: Any) -> Callable[[dict[str, dict[str, Any]]], None]:
    """An edit of "So What" as Music.app saves one: the new values and a new Date Modified."""

    def edit(tracks: dict[str, dict[str, Any]]) -> None:
        track = find_track(tracks, **{"Persistent ID": so_what_id(tracks)})
        track.update(keys, **{"Date Modified": datetime.datetime.now(datetime.UTC)})

    return edit


def so_what_id(tracks: dict[str, dict[str, Any]]) -> str:
    return str(find_track(tracks, Album="Kind of Blue", **{"Track Number": 1})["Persistent ID"])


def modified_after(d: DaemonProc, cursor: str, n: int) -> list[dict[str, Any]]:
    def events() -> list[dict[str, Any]] | None:
        with d.client() as client:
            found = [
                e
                for batch in client.iter_changes(cursor, types=TRACK_TYPES)
                for e in batch["events"]
            ]
        return found if len(found) >= n else None

    found: list[dict[str, Any]] = wait_for(events, what=f"{n} modifications")
    return found


def announce(d: DaemonProc, origin: str, fields: dict[str, Any]) -> tuple[str, str]:
    """Start the daemon and announce a write of "So What"; (its persistent id, the journal
    position before the write)."""
    d.start_built()
    pid = so_what_id(load_plist(d.library)["Tracks"])
    with d.client() as client:
        start: str = client.changes_since()["cursor"]
        assert client.expect_writes(origin, [{"persistent_id": pid, "fields": fields}]) == 1
    return pid, start


def test_an_announced_write_is_tagged_and_a_persons_edit_in_between_is_not() -> None:
    with daemon_env() as d:
        pid, start = announce(d, "genre-updater", {"genre": "Cool Jazz", "year": 1959})
        edit_tracks(d.library, written_by_music_app(Genre="Bebop"))  # a person, meanwhile
        modified_after(d, start, 1)
        edit_tracks(d.library, written_by_music_app(Genre="Cool Jazz", Year=1959))
        person, program = modified_after(d, start, 2)
        assert (person["new"]["genre"], person["origin"]) == ("Bebop", None)
        assert (program["new"]["genre"], program["origin"]) == ("Cool Jazz", "genre-updater")
        assert "genre" in program["changed"]
        logged = d.find_logs("track_modified", persistent_id=pid)
        assert [line["origin"] for line in logged] == [None, "genre-updater"]
        with d.client() as client:
            assert client.status()["expectations"]["pending"] == 0
            mine = ["genre-updater"]
            others = client.changes_since(start, types=TRACK_TYPES, exclude_origins=mine)
            assert [e["seq"] for e in others["events"]] == [person["seq"]]
            replayed = client.subscribe(TRACK_TYPES, since=start, exclude_origins=mine)
            assert next(iter(replayed))["seq"] == person["seq"]
        with d.client() as client:
            with pytest.raises(RemoteError, match=r"exclude_origins\.0' is invalid"):
                client.changes_since(start, exclude_origins=["Genre Updater"])
            with pytest.raises(RemoteError, match="at most 32 items"):
                client.changes_since(start, exclude_origins=[f"p{i}" for i in range(33)])
        cli = ["--since", start, "--type", "track_modified", "--config", str(d.config_path)]
        shown = musicd("changes", *cli, "--exclude-origin", "genre-updater", "--json")
        assert shown.returncode == 0, shown.stderr
        assert [orjson.loads(line).get("seq") for line in shown.stdout.splitlines()] == [
            person["seq"],
            None,  # the position line
        ]
        every = musicd("changes", *cli)
        assert every.stdout.count("track_modified") == 2 and "(by genre-updater)" in every.stdout
        assert d.stop()[0] == 0


@pytest.mark.slow
def test_announcements_survive_a_restart_of_the_daemon() -> None:
    with daemon_env() as d:
        _, start = announce(d, "retitler", {"name": "So What (Take 2)"})
        assert d.stop()[0] == 0
        d.start()
        edit_tracks(d.library, written_by_music_app(Name="So What (Take 2)"))
        [event] = modified_after(d, start, 1)
        assert event["origin"] == "retitler"
        assert d.stop()[0] == 0


async def test_compat_expect_writes_by_music_apps_number_tags_the_echo() -> None:
    with daemon_env() as d:
        d.start_built()
        tracks = load_plist(d.library)["Tracks"]
        number = find_track(tracks, **{"Persistent ID": so_what_id(tracks)})["Track ID"]
        with d.client() as client:
            start = client.changes_since()["cursor"]
        # What a host adds just before it writes (README: "Tell your own writes ...").
        host = [{"id": str(number), "genre": "Cool Jazz", "year": "1959"}]
        assert await expect_writes("genre-updater", host, by="track_id", socket_path=d.socket) == 1
        edit_tracks(d.library, written_by_music_app(Genre="Cool Jazz", Year=1959))
        [event] = modified_after(d, start, 1)
        assert event["origin"] == "genre-updater"
        assert d.stop()[0] == 0
