"""The drop-in `ApiCacheService` against a real daemon, checked against the original class's
documented behaviour: get/set, the year decides the expiry, successes are eternal, invalidation
of an album across sources, invalidate all, the cleanup count, the stats keys, and the
track events that invalidate."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from daemon.client import MusicdClient
from daemon.compat import ApiCacheService, TrackCacheManager
from tests.support import DaemonProc, daemon_env

pytestmark = pytest.mark.timeout(60)

FAILED_TTL = 2.0


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProc]:
    # The original class takes any source name.
    with daemon_env(cache={"failed_ttl_seconds": FAILED_TTL, "sources": ["*"]}) as d:
        d.start()
        d.wait_log("snapshot_built")
        yield d
        d.stop()


@pytest.fixture
async def service(daemon: DaemonProc) -> AsyncIterator[ApiCacheService]:
    svc = ApiCacheService(str(daemon.socket))
    await svc.initialize()
    await svc.invalidate_all()
    yield svc
    await svc.shutdown()


async def test_set_then_get_returns_the_original_fields(service: ApiCacheService) -> None:
    before = time.time()
    data = {"year": "1959", "mbid": "m-1"}
    await service.set_cached_result(
        "Miles Davis", "Kind of Blue", "musicbrainz", True, data, {"score": 100}
    )
    got = await service.get_cached_result("Miles Davis", "Kind of Blue", "musicbrainz")
    assert got is not None
    assert (got.artist, got.album, got.source, got.year) == (
        "Miles Davis",
        "Kind of Blue",
        "musicbrainz",
        "1959",
    )
    assert got.api_response == data and got.metadata == {"score": 100}
    assert got.ttl is None and before - 1 <= got.timestamp <= time.time() + 1
    assert await service.get_cached_result("Miles Davis", "Kind of Blue", "discogs") is None
    # Also called with source= as a keyword, and the year may be a number.
    await service.set_cached_result(
        "Björk", "Homogenic", source="discogs", success=True, data={"year": 1997}
    )
    homogenic = await service.get_cached_result("björk", "HOMOGENIC", "Discogs")
    assert homogenic is not None and homogenic.year == "1997"


async def test_the_year_decides_expiry_whatever_success_says(service: ApiCacheService) -> None:
    await service.set_cached_result("A", "No Year", "musicbrainz", True, {"other": 1})
    await service.set_cached_result("A", "Year", "musicbrainz", False, {"year": "2001"})
    await service.set_cached_result("A", "Blank Year", "musicbrainz", True, {"year": "  "})
    no_year = await service.get_cached_result("A", "No Year", "musicbrainz")
    assert no_year is not None and no_year.year is None and no_year.ttl == round(FAILED_TTL)
    year = await service.get_cached_result("A", "Year", "musicbrainz")
    assert year is not None and year.year == "2001" and year.ttl is None
    assert service.get_stats()["failed_lookups"] == 2
    await anyio.sleep(FAILED_TTL + 0.3)
    assert await service.get_cached_result("A", "No Year", "musicbrainz") is None
    assert await service.get_cached_result("A", "Blank Year", "musicbrainz") is None
    # Eternal: still there after the failed ones expired.
    assert await service.get_cached_result("A", "Year", "musicbrainz") is not None
    assert await service.cleanup_expired() == 2
    assert await service.cleanup_expired() == 0


async def test_invalidate_album_drops_every_source_and_only_that_album(
    service: ApiCacheService,
) -> None:
    for source in ("musicbrainz", "discogs", "lastfm"):
        await service.set_cached_result(
            "Nina Simone", "Wild Is the Wind", source, True, {"year": "1966"}
        )
    await service.set_cached_result(
        "Nina Simone", "Pastel Blues", "musicbrainz", True, {"year": "1965"}
    )
    await service.invalidate_for_album("nina simone", "WILD IS THE WIND")
    for source in ("musicbrainz", "discogs", "lastfm"):
        assert await service.get_cached_result("Nina Simone", "Wild Is the Wind", source) is None
    assert await service.get_cached_result("Nina Simone", "Pastel Blues", "musicbrainz")
    await service.invalidate_all()
    assert service.get_stats()["total_entries"] == 0


async def test_stats_have_the_original_keys(service: ApiCacheService) -> None:
    await service.set_cached_result("S1", "A1", "source1", True, {"year": "2020"})
    await service.set_cached_result("S2", "A2", "source2", True, {"year": "2021"})
    await service.set_cached_result("S3", "A3", "source3", False)
    await service.set_cached_result("S4", "A4", "source4", False, {"other": "data"})
    stats = service.get_stats()
    assert set(stats) == {
        "total_entries",
        "successful_responses",
        "failed_lookups",
        "cache_file",
        "cache_file_exists",
        "successful_policy",
        "failed_policy",
        "persistent",
    }
    assert (stats["total_entries"], stats["successful_responses"], stats["failed_lookups"]) == (
        4,
        2,
        2,
    )
    assert stats["persistent"] is True and stats["cache_file_exists"] is True
    assert stats["failed_policy"] == FAILED_TTL


async def test_track_events_invalidate_their_album(daemon: DaemonProc) -> None:
    service = ApiCacheService(str(daemon.socket))
    await service.initialize()
    await service.set_cached_result("Old Artist", "Old Album", "musicbrainz", True, {"year": "1"})
    await service.set_cached_result("Gone", "Album", "discogs", True, {"year": "2"})
    await service.set_cached_result("Kept", "Album", "discogs", True, {"year": "3"})
    service.emit_track_modified("t1", "Old Artist", "Old Album")
    service.emit_track_removed("t2", "Gone", "Album")
    service.emit_track_removed("t3", "", "Album")  # no artist: nothing to do, as before
    await service.shutdown()  # waits for the scheduled invalidations
    with MusicdClient(daemon.socket) as client:
        assert client.cache_get("Old Artist", "Old Album", "musicbrainz") is None
        assert client.cache_get("Gone", "Album", "discogs") is None
        assert client.cache_get("Kept", "Album", "discogs") is not None


async def test_imported_entries_read_back_as_the_original_wrote_them(
    service: ApiCacheService, daemon: DaemonProc
) -> None:
    # `musicd import-cache` stores an original failed entry like this.
    with MusicdClient(daemon.socket) as client:
        client.cache_put(
            "X",
            "Y",
            "lastfm",
            success=False,
            data={"year": None, "api_response": {"q": "x"}},
            metadata={"n": 1},
        )
    got = await service.get_cached_result("X", "Y", "lastfm")
    assert got is not None and got.year is None and got.api_response == {"q": "x"}
    assert got.metadata == {"n": 1} and got.ttl == round(FAILED_TTL)


async def test_track_cache_manager_reads_the_snapshot(daemon: DaemonProc) -> None:
    manager = TrackCacheManager(str(daemon.socket))
    assert manager.can_use_snapshot()
    tracks = await manager.load_snapshot()
    assert tracks is not None and len(tracks) == 39 and manager.cursor is not None
    assert not TrackCacheManager(str(daemon.root / "nothing.sock")).can_use_snapshot()
    assert await TrackCacheManager(str(daemon.root / "nothing.sock")).load_snapshot() is None


def test_merge_tracks_keeps_order_replaces_in_place_and_appends_new() -> None:
    existing = [{"persistent_id": "a", "v": 1}, {"persistent_id": "b", "v": 1}]
    updates = [{"persistent_id": "c", "v": 2}, {"persistent_id": "a", "v": 2}]
    merged = TrackCacheManager.merge_tracks(existing, updates)
    assert merged == [
        {"persistent_id": "a", "v": 2},
        {"persistent_id": "b", "v": 1},
        {"persistent_id": "c", "v": 2},
    ]


async def test_async_client_has_the_batch_calls_and_iterators(daemon: DaemonProc) -> None:
    from daemon.client import AsyncMusicdClient

    async with AsyncMusicdClient(daemon.socket) as client:
        stored = await client.cache_put_many(
            [
                {"artist": "T", "album": "One", "source": "lastfm", "success": True, "data": 1},
                {
                    "artist": "T",
                    "album": "Two",
                    "source": "lastfm",
                    "success": True,
                    "data": None,
                    "ttl_seconds": 0.5,  # a success that should be asked again
                },
            ]
        )
        assert stored == {"stored": 2}
        got = await client.cache_get_many(
            [("t", "one", "LastFM"), ("T", "Two", "lastfm"), ("T", "Three", "lastfm")]
        )
        assert got[0] is not None and got[0]["data"] == 1
        assert got[1] is not None and got[1]["success"] and got[1]["expires_at"] is not None
        assert got[2] is None
        await anyio.sleep(0.7)
        assert (await client.cache_get_many([("T", "Two", "lastfm")])) == [None]
        pages = [page async for page in client.iter_track_pages(limit=10)]
        assert sum(len(p["tracks"]) for p in pages) == 39 and pages[-1]["next"] is None
        batches = [b async for b in client.iter_changes(pages[0]["cursor"], limit=1)]
        assert not batches[-1]["more"] and not any(b["resync"] for b in batches)
