"""`daemon.compat.TrackCacheManager` as GenreUpdater's track_processor builds and calls it: the
original's cached-track validation, merge by `id`, snapshot metadata and delta state on the
host's own services; `load_snapshot` from the daemon in the original's TrackDict shape when
the daemon has Music.app's ids, the host's snapshot otherwise."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import pytest

from daemon.compat import LibraryCacheMetadata, LibraryDeltaCache, TrackCacheManager, TrackDict
from daemon.compat.tracks import track_from_snapshot
from tests.support import daemon_env

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)
TRACKS = [
    TrackDict(id="1", name="Song A", artist="Artist 1", album="Album 1", year="2020"),
    TrackDict(id="2", name="Song B", artist="Artist 1", album="Album 1", year="2020"),
]


def snapshot_service(**answers: Any) -> AsyncMock:
    service = AsyncMock()
    service.is_enabled = MagicMock(return_value=answers.get("enabled", True))
    service.is_delta_enabled = MagicMock(return_value=answers.get("delta", True))
    service.load_snapshot = AsyncMock(return_value=answers.get("snapshot"))
    service.is_snapshot_valid = AsyncMock(return_value=answers.get("valid", True))
    service.save_snapshot = AsyncMock(return_value="hash")
    service.get_snapshot_metadata = AsyncMock(return_value=answers.get("metadata"))
    service.get_library_mtime = AsyncMock(return_value=NOW)
    service.load_delta = AsyncMock(return_value=None)
    return service


def manager(tmp_path: Path, snapshots: Any, cache: Any = None) -> TrackCacheManager:
    return TrackCacheManager(
        cache_service=cache or AsyncMock(),
        snapshot_service=snapshots,
        console_logger=logging.getLogger("host"),
        current_time_func=lambda: NOW,
        socket_path=tmp_path / "none.sock",
    )


async def test_cached_tracks_are_validated_as_the_original_does(tmp_path: Path) -> None:
    cache = AsyncMock()
    cache.get_async = AsyncMock(return_value=[t.model_dump() for t in TRACKS])
    got = await manager(tmp_path, None, cache).get_cached_tracks("tracks_all")
    assert got == TRACKS
    cache.get_async.return_value = [{"invalid": "data"}]
    assert await manager(tmp_path, None, cache).get_cached_tracks("tracks_all") is None
    cache.get_async.return_value = {"not": "a list"}
    assert await manager(tmp_path, None, cache).get_cached_tracks("tracks_all") is None


def test_merge_replaces_by_id_in_place_and_appends_new() -> None:
    update = TRACKS[1].copy(year="1999")
    new = TrackDict(id="3", name="C", artist="X", album="Y")
    merged = TrackCacheManager.merge_tracks(TRACKS, [new, update])
    assert [(t.id, t.year) for t in merged] == [("1", "2020"), ("2", "1999"), ("3", None)]
    # Plain dicts with an `id` merge the same way.
    assert TrackCacheManager.merge_tracks([{"id": 1}], [{"id": "1", "v": 2}]) == [
        {"id": "1", "v": 2}
    ]


async def test_update_snapshot_keeps_the_forced_scan_time_and_takes_the_mtime_given(
    tmp_path: Path,
) -> None:
    before = LibraryCacheMetadata(NOW, NOW, 1, "old", last_force_scan_time="2024-12-01T00:00:00")
    snapshots = snapshot_service(metadata=before)
    override = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
    await manager(tmp_path, snapshots).update_snapshot(
        list(TRACKS), ["1", "2"], library_mtime_override=override
    )
    snapshots.save_snapshot.assert_awaited_once_with(TRACKS)
    snapshots.get_library_mtime.assert_not_called()
    metadata = snapshots.update_snapshot_metadata.call_args[0][0]
    assert metadata.to_dict() == {
        "version": "1.0",
        "last_full_scan": NOW.isoformat(),
        "library_mtime": override.isoformat(),
        "track_count": 2,
        "snapshot_hash": "hash",
        "last_force_scan_time": "2024-12-01T00:00:00",
    }
    delta: LibraryDeltaCache = snapshots.save_delta.call_args[0][0]
    assert delta.last_run == NOW and delta.processed_track_ids == {"1", "2"}


async def test_update_snapshot_does_nothing_without_an_enabled_service(tmp_path: Path) -> None:
    await manager(tmp_path, None).update_snapshot(list(TRACKS))
    disabled = snapshot_service(enabled=False)
    await manager(tmp_path, disabled).update_snapshot(list(TRACKS))
    disabled.save_snapshot.assert_not_called()
    no_delta = snapshot_service(delta=False)
    await manager(tmp_path, no_delta).update_snapshot(list(TRACKS))
    no_delta.save_delta.assert_not_called()


async def test_without_a_daemon_the_hosts_snapshot_is_used_while_valid(tmp_path: Path) -> None:
    assert await manager(tmp_path, None).load_snapshot() is None
    assert await manager(tmp_path, snapshot_service(snapshot=TRACKS)).load_snapshot() == TRACKS
    stale = snapshot_service(snapshot=TRACKS, valid=False)
    assert await manager(tmp_path, stale).load_snapshot() is None
    assert manager(tmp_path, snapshot_service()).can_use_snapshot() is True
    assert manager(tmp_path, None).can_use_snapshot() is False


async def test_an_xml_snapshot_without_music_ids_leaves_the_hosts_in_place() -> None:
    with daemon_env() as d:
        d.start_built()
        host = snapshot_service(snapshot=TRACKS)
        cache_manager = TrackCacheManager(
            AsyncMock(), host, logging.getLogger("host"), socket_path=d.socket
        )
        assert await cache_manager.load_snapshot() == TRACKS
        d.stop()


def test_a_snapshot_track_becomes_the_originals_track_dict() -> None:
    track = track_from_snapshot(
        {
            "persistent_id": "ABC",
            "name": "So What",
            "artist": "Miles Davis",
            "album": "Kind of Blue",
            "album_artist": None,
            "genre": "Jazz",
            "year": 1959,
            "date_added": "2020-01-01T00:00:00Z",
            "date_modified": "2021-01-01T00:00:00Z",
            "music_id": 4242,
            "database_id": 77,
        }
    )
    assert (track.id, track.year, track.last_modified) == ("4242", "1959", "2021-01-01T00:00:00Z")
    assert track.get("persistent_id") == "ABC" and track.get("missing", "x") == "x"
