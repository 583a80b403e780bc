"""compat when no daemon answers: the host never fails, hears it once with the fix, reads the
daemon's database read-only, keeps its writes and sends them when the daemon is back."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from daemon.compat import ApiCacheService, CacheContentType
from daemon.compat.link import DaemonLink
from tests.compat.support import count_requests
from tests.support import daemon_env

pytestmark = pytest.mark.timeout(60)


def away_service(socket: Path, database: Path, logger: logging.Logger) -> ApiCacheService:
    link = DaemonLink(socket, logger, database=database, retry_seconds=0.0)
    return ApiCacheService(None, logger, link=link)


async def test_with_no_daemon_the_host_runs_on_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("host")
    service = away_service(tmp_path / "none.sock", tmp_path / "musicd.db", logger)
    with caplog.at_level(logging.DEBUG, logger="host"):
        await service.initialize()
        await service.set_cached_result(
            "A", "B", source="musicbrainz", success=True, data={"year": 1}
        )
        await service.set_cached_result("A", "C", source="discogs", success=False)
        got = await service.get_cached_result("a", "b", "MusicBrainz")
        assert got is not None and got.year == "1"
        await service.invalidate_for_album("A", "B")
        assert await service.get_cached_result("A", "B", "musicbrainz") is None
        stats = service.get_stats()
        service.emit_track_removed("t1", "A", "C")
        await service.save_to_disk()
        await service.shutdown()
    assert (stats["total_entries"], stats["failed_lookups"]) == (1, 1)
    assert stats["cache_file_exists"] is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "musicd is not answering" in warnings[0].getMessage()
    assert "start it with 'musicd run'" in warnings[0].getMessage()
    assert "this program goes on" in warnings[0].getMessage()
    # What waits for the daemon, in order.
    assert [kind for kind, _ in service.link.pending] == ["put", "put", "invalidate", "invalidate"]


async def test_away_reads_the_database_and_sends_kept_writes_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("host")
    with daemon_env() as d:
        d.start_built()
        with d.client() as client:
            client.cache_put("Kept", "Album", "musicbrainz", data={"year": 1990})
            client.cache_put("Stale", "Album", "discogs", data={"year": 1991})
        d.stop()
        database = d.state_dir / "musicd.db"
        before = database.stat().st_mtime_ns
        service = away_service(d.socket, database, logger)
        with caplog.at_level(logging.INFO, logger="host"):
            await service.initialize()
            kept = await service.get_cached_result("Kept", "Album", "musicbrainz")
            assert kept is not None and kept.year == "1990"
            await service.invalidate_for_album("Stale", "Album")
            assert await service.get_cached_result("Stale", "Album", "discogs") is None
            await service.set_cached_result(
                "New", "Album", source="lastfm", success=True, data={"year": 2000}
            )
            assert database.stat().st_mtime_ns == before  # read, never written
            d.start()
            # The next call reaches the daemon again and sends what waited first.
            assert await service.get_cached_result("Other", "Album", "lastfm") is None
            assert service.link.pending == []
            await service.shutdown()
        assert "musicd answers again" in caplog.text
        with d.client() as client:
            assert client.cache_get("New", "Album", "lastfm") is not None
            assert client.cache_get("Stale", "Album", "discogs") is None
            assert client.cache_get("Kept", "Album", "musicbrainz") is not None
        d.stop()


async def test_shutdown_waits_for_background_work_even_failing_and_can_be_repeated(
    tmp_path: Path,
) -> None:
    logger = logging.getLogger("host")
    service = away_service(tmp_path / "none.sock", tmp_path / "musicd.db", logger)
    await service.initialize()
    assert service.api_cache == {}
    assert service.cache_config.get_policy(CacheContentType.FAILED_API_LOOKUP).ttl_seconds == 3600
    done: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.01)
        done.append("work")

    async def fail() -> None:
        raise RuntimeError("boom")

    for coro in (work(), fail()):
        task = asyncio.create_task(coro)
        service._background_tasks.add(task)
        task.add_done_callback(service._background_tasks.discard)
    await service.shutdown()
    assert done == ["work"] and service._background_tasks == set()
    await service.shutdown()
    # Shutting down refuses new background work, as the original.
    service.emit_track_removed("t", "A", "B")
    assert service._background_tasks == set()


async def test_a_gather_of_big_answers_is_read_in_as_many_calls_as_the_answer_bound_needs() -> None:
    # 60 answers of 100 KB are over the daemon's 4 MiB answer bound together: the daemon
    # refuses the one get_many and says how many fit; compat asks for the rest, never a miss.
    logger = logging.getLogger("host")
    big = "x" * 100_000
    with daemon_env() as d:
        d.start_built()
        with d.client() as client:
            for i in range(60):
                client.cache_put(f"Artist {i}", "Album", "musicbrainz", data={"year": 1, "n": big})
        link = DaemonLink(d.socket, logger, database=d.state_dir / "musicd.db")
        service = ApiCacheService(None, logger, link=link)
        await service.initialize()
        sent = count_requests(service)
        keys = [(f"Artist {i}", "Album", "musicbrainz") for i in range(60)]
        found = await link.get_many(keys)
        await service.shutdown()
    assert [entry is not None and entry["data"]["n"] == big for entry in found] == [True] * 60
    assert sent.count("cache.get_many") >= 3  # refused once, then the keys that fit, then the rest
