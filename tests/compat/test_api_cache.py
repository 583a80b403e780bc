"""`daemon.compat.ApiCacheService` against a real daemon, held to the original's behaviour (the
cases GenreUpdater's own tests check): get/set with the original's fields, the year deciding
what an entry is, expiry judged when read from the policy in force, invalidation of an album
across sources, invalidate all, the cleanup count, the stats keys, events (its own and the
host's), and the batches that replace the host's loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import pytest

from daemon.client import MusicdClient
from daemon.compat import ApiCacheService, CacheContentType, CacheEventType
from tests.compat.support import HostEvent, HostEventType, count_requests
from tests.support import DaemonProc, daemon_env

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProc]:
    # The original class takes any source name.
    with daemon_env(cache={"sources": ["*"]}) as d:
        d.start_built()
        yield d
        d.stop()


@pytest.fixture
async def service(daemon: DaemonProc) -> AsyncIterator[ApiCacheService]:
    svc = ApiCacheService(None, logging.getLogger("host"), socket_path=daemon.socket)
    await svc.initialize()
    await svc.invalidate_all()
    yield svc
    await svc.shutdown()


Fresh = Callable[[], Awaitable[ApiCacheService]]


@pytest.fixture
async def fresh(daemon: DaemonProc) -> AsyncIterator[Fresh]:
    """Another run of the host: nothing in memory, everything in the daemon."""
    made: list[ApiCacheService] = []

    async def make() -> ApiCacheService:
        svc = ApiCacheService(None, logging.getLogger("host"), socket_path=daemon.socket)
        made.append(svc)
        await svc.initialize()
        return svc

    yield make
    for svc in made:
        await svc.shutdown()


async def test_set_then_get_returns_the_original_fields(
    service: ApiCacheService, fresh: Fresh
) -> None:
    data = {"year": "1973", "genres": ["Progressive Rock"]}
    await service.set_cached_result(
        "  Pink Floyd ", "Dark Side of the Moon", source=" musicbrainz ", success=True, data=data
    )
    for svc in (service, await fresh()):
        got = await svc.get_cached_result("pink floyd", "DARK SIDE OF THE MOON", "MusicBrainz")
        assert got is not None
        assert (got.artist, got.album, got.source, got.year) == (
            "Pink Floyd",
            "Dark Side of the Moon",
            "musicbrainz",
            "1973",
        )
        assert got.api_response == data and got.ttl is None
        assert await svc.get_cached_result("Unknown", "Album", "source") is None
    with pytest.raises(TypeError):
        await service.set_cached_result("A", "B", "musicbrainz", True)  # type: ignore[misc]


async def test_the_year_decides_whatever_success_says(service: ApiCacheService) -> None:
    await service.set_cached_result("A", "No Year", source="s", success=True, data={"x": 1})
    await service.set_cached_result("A", "Year", source="s", success=False, data={"year": 2001})
    await service.set_cached_result("A", "Blank", source="s", success=True, data={"year": " "})
    stats = service.get_stats()
    assert (stats["successful_responses"], stats["failed_lookups"]) == (1, 2)
    year = await service.get_cached_result("A", "Year", "s")
    assert year is not None and year.year == "2001"


async def test_a_policy_changed_applies_to_entries_written_before(
    service: ApiCacheService, fresh: Fresh
) -> None:
    await service.set_cached_result("F", "Failed", source="s", success=False)
    await service.set_cached_result("F", "Found", source="s", success=True, data={"year": "1"})
    later = await fresh()
    assert await later.get_cached_result("F", "Failed", "s") is not None
    # The failed lookups' retry time is now zero: the old entry is judged by it when read.
    later.cache_config.get_policy(CacheContentType.FAILED_API_LOOKUP).ttl_seconds = 0
    assert await later.get_cached_result("F", "Failed", "s") is None
    assert await later.get_cached_result("F", "Found", "s") is not None
    assert await (await fresh()).get_cached_result("F", "Failed", "s") is not None


async def test_invalidate_album_drops_every_source_and_only_that_album(
    service: ApiCacheService, fresh: Fresh
) -> None:
    for source in ("spotify", "musicbrainz", "discogs"):
        await service.set_cached_result(
            "Led Zeppelin", "IV", source=source, success=True, data={"year": "1971"}
        )
    await service.set_cached_result(
        "Led Zeppelin", "Physical Graffiti", source="spotify", success=True, data={"year": "1975"}
    )
    await service.invalidate_for_album("led zeppelin", "iv")
    for svc in (service, await fresh()):
        for source in ("spotify", "musicbrainz", "discogs"):
            assert await svc.get_cached_result("Led Zeppelin", "IV", source) is None
        assert await svc.get_cached_result("Led Zeppelin", "Physical Graffiti", "spotify")


async def test_invalidate_all_clears_the_shared_cache_and_says_so(
    service: ApiCacheService, daemon: DaemonProc, caplog: pytest.LogCaptureFixture
) -> None:
    await service.set_cached_result("A1", "B1", source="s1", success=True, data={"year": "2020"})
    with caplog.at_level(logging.WARNING, logger="host"):
        await service.invalidate_all()
    assert service.api_cache == {}
    assert "every program using it" in caplog.text
    with MusicdClient(daemon.socket) as client:
        assert client.cache_get("A1", "B1", "s1") is None


async def test_cleanup_counts_what_the_policy_expired(service: ApiCacheService) -> None:
    await service.set_cached_result("C1", "A", source="s", success=True, data={"year": "2020"})
    await service.set_cached_result("C2", "A", source="s", success=False)
    await service.set_cached_result("C3", "A", source="s", success=False)
    for key in list(service.api_cache):
        service.api_cache[key].timestamp = 0.0
    assert await service.cleanup_expired() == 2
    assert len(service.api_cache) == 1
    assert await service.get_cached_result("C1", "A", "s") is not None


async def test_stats_have_the_original_keys(service: ApiCacheService) -> None:
    await service.set_cached_result("S1", "A1", source="s1", success=True, data={"year": "2020"})
    await service.set_cached_result("S2", "A2", source="s2", success=False)
    stats = service.get_stats()
    assert stats == {
        "total_entries": 2,
        "successful_responses": 1,
        "failed_lookups": 1,
        "cache_file": str(service.api_cache_file),
        "cache_file_exists": True,
        "successful_policy": service.cache_config.INFINITE_TTL,
        "failed_policy": 3600,
        "persistent": True,
    }


async def test_events_of_the_service_and_of_the_host_invalidate_their_album(
    service: ApiCacheService, daemon: DaemonProc
) -> None:
    for artist in ("Old Artist", "Gone", "Host", "Kept"):
        await service.set_cached_result(
            artist, "Album", source="s", success=True, data={"year": "1"}
        )
    service.emit_track_modified("t1", "Old Artist", "Album")
    service.emit_track_removed("t2", "Gone", "Album")
    service.emit_track_removed("t3", "", "Album")  # no artist: nothing to do, as before
    host = HostEvent(
        HostEventType.TRACK_MODIFIED, "t4", metadata={"artist": "Host", "album": "Album"}
    )
    service.event_manager.emit_event(host)
    assert host.event_type == CacheEventType.TRACK_MODIFIED
    assert CacheEventType.TRACK_MODIFIED == host.event_type
    await service.shutdown()  # waits for the scheduled invalidations
    with MusicdClient(daemon.socket) as client:
        for artist in ("Old Artist", "Gone", "Host"):
            assert client.cache_get(artist, "Album", "s") is None
        assert client.cache_get("Kept", "Album", "s") is not None


def test_emit_without_a_running_loop_logs_and_does_not_raise(
    daemon: DaemonProc, caplog: pytest.LogCaptureFixture
) -> None:
    svc = ApiCacheService(None, logging.getLogger("host"), socket_path=daemon.socket)
    with caplog.at_level(logging.ERROR, logger="host"):
        svc.emit_track_removed("t", "Artist", "Album")
    assert "No running event loop: invalidation of Artist - Album skipped" in caplog.text


async def test_a_gather_of_lookups_is_one_batch_call(
    service: ApiCacheService, fresh: Fresh
) -> None:
    await service.set_cached_result(
        "G", "Album 7", source="musicbrainz", success=True, data={"year": "7"}
    )
    later = await fresh()
    sent = count_requests(later)
    found = await asyncio.gather(
        *(later.get_cached_result("G", f"Album {n}", "musicbrainz") for n in range(300))
    )
    assert sent == ["cache.get_many"]
    assert [n for n, hit in enumerate(found) if hit is not None] == [7]
    assert found[7] is not None and found[7].year == "7"


async def test_per_track_invalidations_of_one_album_are_one_request(
    service: ApiCacheService, fresh: Fresh
) -> None:
    await service.set_cached_result("W", "Written", source="s", success=True, data={"year": "1"})
    sent = count_requests(service)
    # GenreUpdater's orchestrator, once per written track: invalidate, then a TRACK_MODIFIED.
    for n in range(12):
        await service.invalidate_for_album("W", "Written")
        service.event_manager.emit_event(
            HostEvent(
                HostEventType.TRACK_MODIFIED, f"t{n}", metadata={"artist": "W", "album": "Written"}
            )
        )
    await service.shutdown()
    assert sent == ["cache.invalidate_many"]
    assert await (await fresh()).get_cached_result("W", "Written", "s") is None


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
    assert got.metadata == {"n": 1} and got.ttl == 3600  # the daemon's default retry time


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
