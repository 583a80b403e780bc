from __future__ import annotations

import random
import stat
import unicodedata
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from daemon.models import album_key
from daemon.stores.api_cache import ApiCache, CachedApiResult

TTL = 3600.0


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _cache(tmp_path: Path, clock: Clock | None = None) -> ApiCache:
    return ApiCache(tmp_path / "api_cache.json", failed_ttl_seconds=TTL, clock=clock or Clock())


def _on_disk(cache: ApiCache) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = orjson.loads(cache.path.read_bytes())["entries"]
    return entries


@pytest.mark.parametrize(
    ("artist", "album"),
    [
        (unicodedata.normalize("NFD", "Sigur Rós"), unicodedata.normalize("NFD", "Ágætis byrjun")),
        ("SIGUR RÓS", "ÁGÆTIS BYRJUN"),
        ("  Sigur\u00a0Rós ", "Ágætis \t byrjun"),
    ],
)
def test_differently_written_names_hit_the_same_entry(
    tmp_path: Path, artist: str, album: str
) -> None:
    cache = _cache(tmp_path)
    stored = cache.put("Sigur Rós", "Ágætis byrjun", "MusicBrainz", success=True, data={"y": 1999})
    assert cache.get(artist, album, "  musicbrainz ") is stored
    assert len(cache) == 1


def test_entry_keeps_original_spelling_and_normalised_source(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    entry = cache.put("Björk", "Post", " Discogs ", success=True, data=[1], metadata={"m": 1})
    assert (entry.artist, entry.album, entry.source) == ("Björk", "Post", "discogs")
    assert entry.data == [1] and entry.metadata == {"m": 1}
    assert entry.created_at == 1_000_000.0 and entry.expires_at is None
    assert entry.key == album_key("björk", "POST")


def test_failed_entries_expire_and_successful_ones_do_not(tmp_path: Path) -> None:
    clock = Clock()
    cache = _cache(tmp_path, clock)
    failed = cache.put("A", "B", "lastfm", success=False)
    assert failed.expires_at == clock.now + TTL
    cache.put("A", "B", "spotify", success=True, data={"id": "x"})
    clock.now += TTL - 1
    assert cache.get("A", "B", "lastfm") is failed
    clock.now += 1
    assert cache.get("A", "B", "lastfm") is None
    assert len(cache) == 1  # the expired entry was dropped
    clock.now += 10 * 365 * 86400
    assert cache.get("A", "B", "spotify") is not None


def test_hits_and_misses_are_counted_per_source(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.put("A", "B", "musicbrainz", success=True)
    cache.get("A", "B", "musicbrainz")
    cache.get("a", "b", "MusicBrainz")
    cache.get("A", "B", "discogs")
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (2, 1)
    assert stats["by_source"]["musicbrainz"] == {
        "entries": 1,
        "successful": 1,
        "failed": 0,
        "hits": 2,
        "misses": 0,
    }
    assert stats["by_source"]["discogs"]["misses"] == 1


def test_invalidate_album_removes_every_source_of_that_album_only(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    for source in ("musicbrainz", "discogs", "lastfm"):
        cache.put("Björk", "Homogenic", source, success=True)
        cache.put("Björk", "Post", source, success=source != "lastfm")
    cache.put("Other", "Homogenic", "spotify", success=True)
    assert cache.invalidate_album(unicodedata.normalize("NFD", "BJÖRK"), "homogenic") == 3
    assert cache.get_album("Björk", "Homogenic") == {}
    assert set(cache.get_album("Björk", "Post")) == {"musicbrainz", "discogs", "lastfm"}
    assert cache.get("Other", "Homogenic", "spotify") is not None
    assert cache.invalidate_album("Björk", "Homogenic") == 0
    assert cache.invalidate_keys([album_key("Björk", "Post"), ("no", "such")]) == 3
    assert len(cache) == 1
    assert cache.stats()["failed"] == 0


def test_clear_and_cleanup_expired(tmp_path: Path) -> None:
    clock = Clock()
    cache = _cache(tmp_path, clock)
    cache.put("A", "B", "musicbrainz", success=False)
    cache.put("A", "C", "musicbrainz", success=False)
    cache.put("A", "D", "musicbrainz", success=True)
    clock.now += TTL / 2
    cache.put("A", "C", "musicbrainz", success=False)  # a retry that failed again
    clock.now += TTL / 2
    assert cache.cleanup_expired() == 1
    assert cache.get("A", "C", "musicbrainz") is not None
    assert cache.clear() == 2
    assert len(cache) == 0
    assert cache.clear() == 0


def test_replacing_entries_keeps_counts_right(tmp_path: Path) -> None:
    # Counts are kept incrementally; compare them with a recount after random operations.
    clock = Clock()
    cache = _cache(tmp_path, clock)
    rng = random.Random(7)
    albums = [(f"Artist {i % 5}", f"Album {i}") for i in range(30)]
    sources = ["musicbrainz", "discogs", "lastfm", "spotify"]
    for _ in range(2000):
        artist, album = rng.choice(albums)
        op = rng.random()
        if op < 0.6:
            cache.put(artist, album, rng.choice(sources), success=rng.random() < 0.7)
        elif op < 0.75:
            cache.get(artist, album, rng.choice(sources))
        elif op < 0.85:
            cache.invalidate_album(artist, album)
        elif op < 0.95:
            clock.now += rng.uniform(0, TTL / 4)
        else:
            cache.cleanup_expired()
    entries = [e for sources_ in cache.capture().albums for e in sources_.values()]
    stats = cache.stats()
    assert stats["total_entries"] == len(entries) == len(cache)
    assert stats["failed"] == sum(not e.success for e in entries)
    for source in sources:
        mine = [e for e in entries if e.source == source]
        counted = stats["by_source"].get(source, {"entries": 0, "failed": 0})
        assert counted["entries"] == len(mine)
        assert counted["failed"] == sum(not e.success for e in mine)


def test_stats_report_file_and_policies(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    stats = cache.stats()
    assert stats["cache_file"] == str(tmp_path / "api_cache.json")
    assert stats["cache_file_exists"] is False
    assert stats["policies"] == {"successful": "kept until invalidated", "failed_ttl_seconds": TTL}
    cache.put("A", "B", "musicbrainz", success=True)
    cache.capture().write()
    assert cache.stats()["cache_file_exists"] is True


def test_round_trip_and_expired_entries_dropped_on_load(tmp_path: Path) -> None:
    clock = Clock()
    cache = _cache(tmp_path, clock)
    ok = cache.put("Björk", "Post", "musicbrainz", success=True, data={"year": 1995, "t": [1]})
    fail = cache.put("Björk", "Post", "discogs", success=False, metadata={"error": "timeout"})
    cache.put("Other", "Album", "lastfm", success=False)
    cache.capture().write()
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert len(_on_disk(cache)) == 3
    loaded = _cache(tmp_path, clock)
    assert loaded.load()
    assert loaded.get("bjork", "post", "musicbrainz") is None  # "o" is not "ö"
    assert loaded.get("BJÖRK", "POST", "musicbrainz") == ok
    assert loaded.get("Björk", "Post", "discogs") == fail
    assert not loaded.dirty
    clock.now += TTL
    later = _cache(tmp_path, clock)
    with capture_logs() as logs:
        assert later.load()
    assert len(later) == 1
    assert later.dirty  # so the file is rewritten without them
    [entry] = [e for e in logs if e["event"] == "api_cache_loaded"]
    assert entry["expired_dropped"] == 2


def test_empty_cache_deletes_the_file(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.put("A", "B", "musicbrainz", success=True)
    cache.capture().write()
    assert cache.path.exists()
    cache.invalidate_album("A", "B")
    assert cache.dirty
    cache.capture().write()
    assert not cache.path.exists()
    assert not cache.dirty
    # Nothing to delete: still fine.
    cache.put("A", "B", "musicbrainz", success=True)
    cache.clear()
    cache.capture().write()
    assert not cache.path.exists()
    reloaded = _cache(tmp_path)
    assert not reloaded.load()
    assert len(reloaded) == 0


@pytest.mark.parametrize(
    "document",
    [
        b"{",
        orjson.dumps({"version": 2, "entries": []}),
        orjson.dumps({"version": 1, "entries": {}}),
        orjson.dumps({"version": 1, "entries": [{"artist": "A"}]}),
        orjson.dumps(
            {
                "version": 1,
                "entries": [
                    {
                        "artist": "A",
                        "album": "B",
                        "source": "x",
                        "success": "yes",
                        "data": None,
                        "metadata": {},
                        "created_at": 1.0,
                        "expires_at": None,
                    }
                ],
            }
        ),
    ],
)
def test_unusable_file_is_quarantined_and_cache_starts_empty(
    tmp_path: Path, document: bytes
) -> None:
    (tmp_path / "api_cache.json").write_bytes(document)
    cache = _cache(tmp_path)
    assert not cache.load()
    assert len(cache) == 0
    assert [p.name.startswith("api_cache.json.corrupt-") for p in tmp_path.iterdir()] == [True]


def test_put_refuses_what_cannot_be_saved(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    with pytest.raises(TypeError):
        cache.put("A", "B", "musicbrainz", success=True, data={1: object()})
    with pytest.raises(ValueError, match="source"):
        cache.put("A", "B", "  ", success=True)
    assert len(cache) == 0
    assert not cache.dirty


def test_change_after_capture_keeps_dirty_and_is_not_in_the_file(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.put("A", "B", "musicbrainz", success=True)
    save = cache.capture()
    cache.put("A", "B", "discogs", success=True)  # same album: its dict is replaced, not edited
    assert save.write()
    assert cache.dirty
    assert [e["source"] for e in _on_disk(cache)] == ["musicbrainz"]


def test_entry_dict_round_trip() -> None:
    entry = CachedApiResult("A", "B", "musicbrainz", True, {"x": [1]}, {"m": "n"}, 1.5, None)
    assert CachedApiResult.from_dict(orjson.loads(orjson.dumps(entry.to_dict()))) == entry
    assert orjson.loads(orjson.dumps(entry)) == entry.to_dict()
