"""GenreUpdater's run, driven through `daemon.compat` as its track_processor.py and
orchestrator.py drive the original classes, against a real daemon reading Music.app (a fake
osascript); then the daemon stops in the middle of the run and comes back. The host sees no
exception the original would not raise, and nothing it wrote is lost."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import pytest

from daemon.compat import ApiCacheService, TrackCacheManager, TrackDict
from daemon.compat.link import DaemonLink
from tests.compat.support import HostEvent, HostEventType
from tests.e2e.test_music_app_e2e import TRACKS, music_app_env

pytestmark = pytest.mark.timeout(120)

SOURCES = ("musicbrainz", "discogs", "itunes")
NUMBERED = [replace(t, music_id=100 + n, database_id=900 + n) for n, t in enumerate(TRACKS)]


def host_snapshot_service() -> AsyncMock:
    """GenreUpdater's own snapshot service: enabled, with no snapshot of its own yet."""
    service = AsyncMock()
    service.is_enabled = MagicMock(return_value=True)
    service.is_delta_enabled = MagicMock(return_value=True)
    service.load_snapshot = AsyncMock(return_value=None)
    service.save_snapshot = AsyncMock(return_value="hash")
    service.get_snapshot_metadata = AsyncMock(return_value=None)
    service.load_delta = AsyncMock(return_value=None)
    return service


async def write_back(api: ApiCacheService, tracks: list[TrackDict]) -> None:
    """orchestrator.invalidate_for_track, once per written track."""
    for track in tracks:
        await api.invalidate_for_album(track.artist, track.album)
        api.event_manager.emit_event(
            HostEvent(
                HostEventType.TRACK_MODIFIED,
                track.id,
                metadata={"artist": track.artist, "album": track.album},
            )
        )


async def look_up(api: ApiCacheService, tracks: list[TrackDict]) -> list[Any]:
    """The API orchestrator: every album from every source, at once."""
    albums = {(t.artist, t.album) for t in tracks if t.album}
    return await asyncio.gather(
        *(api.get_cached_result(artist, album, s) for artist, album in albums for s in SOURCES)
    )


async def test_a_genreupdater_run_through_compat_survives_the_daemon_stopping() -> None:
    logger = logging.getLogger("genreupdater")
    with music_app_env() as env:
        d = env.daemon
        env.fake.serve(NUMBERED)
        d.start(extra_env=env.fake.env())
        d.wait_log("snapshot_built", timeout=20)

        host_snapshots = host_snapshot_service()
        processor = TrackCacheManager(
            cache_service=AsyncMock(),
            snapshot_service=host_snapshots,
            console_logger=logger,
            socket_path=d.socket,
        )
        # Reconnects at the first call after the daemon is back (by default, 5 s after a failure).
        api = ApiCacheService(None, logger, link=DaemonLink(d.socket, logger, retry_seconds=0.0))
        await api.initialize()

        # Fetch: the daemon's snapshot, with Music.app's ids as `id`.
        snapshot = await processor.load_snapshot()
        assert snapshot is not None
        assert sorted(t.id for t in snapshot) == ["100", "101", "102"]
        # Delta merge: one track re-fetched by id, one new: no duplicate.
        updated = next(t for t in snapshot if t.id == "100").copy(genre="Cool Jazz")
        new = TrackDict(id="103", name="Blue in Green", artist="Miles Davis", album="Kind of Blue")
        merged = processor.merge_tracks(snapshot, [updated, new])
        assert len(merged) == 4 and next(t for t in merged if t.id == "100").genre == "Cool Jazz"

        assert not any(await look_up(api, merged))
        for track in (t for t in merged if t.album):
            for source in SOURCES:
                data = {"year": "1959"} if source == "itunes" else None
                await api.set_cached_result(
                    track.artist, track.album, source=source, success=bool(data), data=data
                )
        assert all(await look_up(api, merged))
        await write_back(api, [updated, new])
        assert api.get_stats()["total_entries"] == 3  # Homogenic's; Kind of Blue was written
        await processor.update_snapshot(merged, [t.id for t in merged])
        host_snapshots.save_snapshot.assert_awaited_once_with(merged)

        # The daemon stops in the middle of the run.
        d.stop()
        assert await processor.load_snapshot() is None  # the host's own: it has none
        found = await look_up(api, merged)
        assert sum(r is not None for r in found) == 3  # read from the database file
        await api.set_cached_result(
            "Nina Simone", "Pastel Blues", source="discogs", success=True, data={"year": "1965"}
        )
        await write_back(api, [next(t for t in merged if t.artist == "Björk")])
        api.emit_track_removed("102", "Nina Simone", "")
        assert not any(await look_up(api, merged))  # the kept invalidation hides the file's
        assert api.get_stats()["total_entries"] == 3  # the file's own count
        await api.save_to_disk()

        # It comes back: the kept writes arrive, in order.
        d.start(extra_env=env.fake.env())
        d.wait_log("snapshot_built", timeout=20)
        await api.save_to_disk()
        assert api.link.pending == []
        await api.shutdown()
        with d.client() as client:
            assert client.cache_get("Nina Simone", "Pastel Blues", "discogs") is not None
            assert client.cache_get("Björk", "Homogenic", "itunes") is None
        d.stop()
