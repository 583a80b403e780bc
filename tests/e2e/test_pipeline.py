"""The whole pipeline against a real `musicd run` subprocess on real files."""

from __future__ import annotations

import signal
from typing import Any

import orjson
import pytest

from daemon.models import normalize_name
from tests.support import (
    SOURCES,
    DaemonProc,
    daemon_env,
    db_meta,
    db_seed_cache,
    edit_tracks,
    find_track,
    load_plist,
    set_track_keys,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)


def seed_cache(d: DaemonProc, albums: list[tuple[str, str]]) -> None:
    """Cached answers written before the daemon starts, as an earlier run would have left."""
    entries = [
        {
            "artist": artist,
            "album": album,
            "source": source,
            "success": True,
            "data": {"year": 1959},
            "metadata": {},
            "created_at": 1_700_000_000.0,
            "expires_at": None,
        }
        for artist, album in albums
        for source in SOURCES
    ]
    db_seed_cache(d.state_dir, entries)


def cached_albums(d: DaemonProc) -> set[tuple[str, str]]:
    return {(normalize_name(e["artist"]), normalize_name(e["album"])) for e in d.cache_entries()}


def wait_invalidated(d: DaemonProc, album: tuple[str, str], what: str) -> None:
    """Wait until the cache no longer holds answers for `album` (artist, album), normalised."""
    wait_for(lambda: album not in cached_albums(d), what=what)


def wait_flushed(d: DaemonProc, after: int) -> None:
    d.wait_log("flush_finished", after=after)


ALBUMS = [
    ("Miles Davis", "Kind of Blue"),
    ("Björk", "Homogenic"),
    ("Nina Simone", "Wild Is the Wind"),
]


def test_album_rename_is_logged_merged_and_invalidates_only_that_album() -> None:
    with daemon_env() as d:
        seed_cache(d, ALBUMS)
        d.start_built()
        mark = d.mark()

        set_track_keys(d.library, "So What", Album="Kind of Blue (Legacy Edition)")
        event = d.wait_log("track_modified", after=mark)
        assert event["changed"] == ["album"]
        assert event["old"] == {"album": "Kind of Blue"}
        assert event["new"] == {"album": "Kind of Blue (Legacy Edition)"}
        d.wait_log("cache_invalidated", after=mark)
        wait_flushed(d, mark)

        def flushed() -> bool:
            snap = d.snapshot_tracks()
            return snap[event["persistent_id"]]["album"] == "Kind of Blue (Legacy Edition)"

        wait_for(flushed, what="the tracks table with the new album name")
        wait_invalidated(
            d, ("miles davis", "kind of blue"), "old album gone from the api_cache table"
        )
        remaining = cached_albums(d)
        assert ("björk", "homogenic") in remaining
        assert ("nina simone", "wild is the wind") in remaining
        assert d.stop()[0] == 0


def test_removed_track_leaves_snapshot_and_invalidates_its_album() -> None:
    with daemon_env() as d:
        seed_cache(d, ALBUMS)
        d.start_built()
        pid = find_track(load_plist(d.library)["Tracks"], Name="Hunter")["Persistent ID"]
        mark = d.mark()

        def remove(tracks: dict[str, dict[str, Any]]) -> None:
            for key, track in list(tracks.items()):
                if track["Name"] == "Hunter":
                    del tracks[key]

        edit_tracks(d.library, remove)
        event = d.wait_log("track_removed", after=mark)
        assert event["persistent_id"] == pid
        assert event["artist"] == "Björk" and event["album"] == "Homogenic"
        wait_for(lambda: pid not in d.snapshot_tracks(), what="track gone from the snapshot")
        wait_invalidated(d, ("björk", "homogenic"), "album invalidated in the api_cache table")
        assert ("miles davis", "kind of blue") in cached_albums(d)
        assert d.stop()[0] == 0


def test_file_replaced_by_rename_is_noticed() -> None:
    with daemon_env() as d:
        d.start_built()
        mark = d.mark()

        def retitle(tracks: dict[str, dict[str, Any]]) -> None:
            find_track(tracks, Name="Jóga")["Name"] = "Jóga (String Version)"

        edit_tracks(d.library, retitle, by_rename=True)
        event = d.wait_log("track_modified", after=mark)
        assert event["new"] == {"name": "Jóga (String Version)"}
        assert d.stop()[0] == 0


def test_burst_of_writes_coalesces_into_one_scan() -> None:
    with daemon_env() as d:
        d.start_built()
        mark = d.mark()
        for i in range(20):

            def bump(tracks: dict[str, dict[str, Any]], i: int = i) -> None:
                find_track(tracks, Name="Batavia")["Genre"] = f"Ambient {i}"

            edit_tracks(d.library, bump)
        d.wait_log("scan_finished", after=mark)
        d.wait_log("flush_finished", after=mark)
        scans = [e for e in d.logs()[mark:] if e["event"] == "scan_finished"]
        assert len(scans) <= 3
        wait_for(
            lambda: any(t["genre"] == "Ambient 19" for t in d.snapshot_tracks().values()),
            what="final genre in the snapshot",
        )
        assert d.stop()[0] == 0


def test_sigterm_drains_flushes_and_exits_zero_quickly() -> None:
    with daemon_env(state={"flush_interval_seconds": 3600}) as d:
        d.start_built()
        mark = d.mark()

        def edit(tracks: dict[str, dict[str, Any]]) -> None:
            find_track(tracks, Name="Four Women")["Album"] = "Wild Is the Wind (Mono)"

        edit_tracks(d.library, edit)
        d.wait_log("track_modified", after=mark)
        code, took = d.stop(signal.SIGTERM)
        assert code == 0
        assert took < 5
        assert d.find_logs("final_checkpoint_finished")
        assert d.find_logs("daemon_stopped")
        assert any(t["album"] == "Wild Is the Wind (Mono)" for t in d.snapshot_tracks().values())
        # The final checkpoint folded the WAL into the database file and emptied it.
        wal = d.state_dir / "musicd.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0


@pytest.mark.slow
def test_edit_while_stopped_is_reconciled_on_next_start() -> None:
    with daemon_env() as d:
        seed_cache(d, ALBUMS)
        d.start_built()
        assert d.stop()[0] == 0

        def edit(tracks: dict[str, dict[str, Any]]) -> None:
            find_track(tracks, Name="Lilac Wine")["Artist"] = "Jeff Buckley"
            find_track(tracks, Name="Lilac Wine")["Album Artist"] = "Jeff Buckley"

        edit_tracks(d.library, edit)
        mark = d.mark()
        d.start()
        event = d.wait_log("track_modified", after=mark)
        assert set(event["changed"]) == {"artist", "album_artist"}
        assert not d.find_logs("snapshot_built")[1:]
        wait_invalidated(
            d, ("nina simone", "wild is the wind"), "old album invalidated after reconciliation"
        )
        assert ("björk", "homogenic") in cached_albums(d)
        assert d.stop()[0] == 0


def test_first_start_builds_the_snapshot_without_a_flood_of_events() -> None:
    with daemon_env() as d:
        seed_cache(d, ALBUMS)
        d.start()
        built = d.wait_log("snapshot_built")
        assert built["tracks"] == 39
        d.wait_log("flush_finished")
        assert not d.find_logs("track_added")
        assert not d.find_logs("cache_invalidated")
        assert len(d.snapshot_tracks()) == 39
        meta = db_meta(d.state_dir)
        assert meta["last_full_scan"] == meta["last_force_scan_time"] is not None
        assert meta["library_size"] == d.library.stat().st_size
        assert d.stop()[0] == 0


def test_broken_library_file_changes_nothing_and_is_retried() -> None:
    with daemon_env() as d:
        d.start_built()
        d.wait_log("flush_finished")
        before = d.snapshot_tracks()
        good = d.library.read_bytes()
        mark = d.mark()
        d.library.write_bytes(good[: len(good) // 2])
        error = d.wait_log("library_unreadable", after=mark)
        assert "line" in error["reason"]
        assert not [e for e in d.logs()[mark:] if e["event"].startswith("track_")]
        assert d.snapshot_tracks() == before
        mark = d.mark()

        d.library.write_bytes(good.replace(b"Homogenic", b"Homogenic (Live)"))
        d.wait_log("track_modified", after=mark)
        d.wait_log("library_readable_again", after=mark)
        assert d.stop()[0] == 0


def test_corrupt_database_is_moved_aside_and_rebuilt() -> None:
    with daemon_env() as d:
        d.state_dir.mkdir()
        (d.state_dir / "musicd.db").write_bytes(b"not a database at all" * 100)
        d.start_built()
        moved = d.wait_log("database_corrupt")
        assert moved["moved_to"].startswith(str(d.state_dir / "musicd.db.corrupt-"))
        assert len(list(d.state_dir.glob("musicd.db.corrupt-*"))) == 1
        assert len(d.snapshot_tracks()) == 39
        assert d.stop()[0] == 0


def test_old_json_state_files_are_imported_once_and_kept_aside() -> None:
    with daemon_env() as d:
        d.state_dir.mkdir()
        entry = {
            "artist": "Miles Davis",
            "album": "Kind of Blue",
            "source": "musicbrainz",
            "success": True,
            "data": {"year": 1959},
            "metadata": {},
            "created_at": 1_700_000_000.0,
            "expires_at": None,
        }
        (d.state_dir / "api_cache.json").write_bytes(
            orjson.dumps({"version": 1, "entries": [entry]})
        )
        (d.state_dir / "snapshot.meta.json").write_bytes(
            orjson.dumps({"version": 1, "last_seq": 41})
        )
        d.start()
        imported = d.wait_log("legacy_state_imported")
        assert imported["cache_entries"] == 1
        d.wait_log("scan_finished")
        assert [e["data"] for e in d.cache_entries()] == [{"year": 1959}]
        assert sorted(p.name.split(".imported-")[0] for p in d.state_dir.glob("*.imported-*")) == [
            "api_cache.json",
            "snapshot.meta.json",
        ]
        # Subscribers of the old files saw seqs up to 41: the journal goes on after them.
        assert d.wait_log("daemon_started")["last_seq"] == 41
        assert d.stop()[0] == 0


def test_missing_library_is_waited_for() -> None:
    with daemon_env() as d:
        content = d.library.read_bytes()
        d.library.unlink()
        d.start()
        d.wait_log("library_missing")
        mark = d.mark()
        d.library.write_bytes(content)
        built = d.wait_log("snapshot_built", after=mark)
        assert built["tracks"] == 39
        assert len(d.find_logs("library_missing")) == 1
        assert d.stop()[0] == 0


def test_second_daemon_on_same_state_dir_exits_non_zero_with_a_message() -> None:
    with daemon_env() as d:
        d.start()
        second = d.run_to_exit()
        assert second.returncode != 0
        err = second.stderr
        assert "already running" in err
        assert "Traceback" not in err
        assert d.proc is not None and d.proc.poll() is None
        assert d.stop()[0] == 0


def test_bad_config_exits_78_with_one_line() -> None:
    with daemon_env() as d:
        d.config_path.write_text("[library]\nsettle = 1\n")
        result = d.run_to_exit()
        assert result.returncode == 78
        err = result.stderr.strip()
        assert "library.settle" in err and len(err.splitlines()) == 1
