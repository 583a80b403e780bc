"""The cache's sources, one rule for every write and counters only for what the config knows
(daemon/service/sources.py, held by daemon/service/cache_api.py)."""

from __future__ import annotations

import pytest

from daemon.control.protocol import INVALID_PARAMS
from daemon.errors import RemoteError
from daemon.service.sources import MAX_COUNTED_SOURCES, OTHER, Sources, UnknownSource
from tests.control.local_server import LocalServer, local_server


def entry(source: str, album: str = "Homogenic") -> dict[str, object]:
    return {"artist": "Björk", "album": album, "source": source, "success": True, "data": 1}


def test_cache_put_many_refuses_a_source_cache_put_refuses(local: LocalServer) -> None:
    with local.client() as client:
        with pytest.raises(RemoteError, match="unknown source 'nowhere'") as put:
            client.cache_put("Björk", "Homogenic", "nowhere", data=1)
        with pytest.raises(RemoteError, match="1 invalid entry, nothing was stored") as many:
            client.cache_put_many([entry("musicbrainz"), entry("nowhere", "Debut")])
        assert put.value.rpc_code == many.value.rpc_code == INVALID_PARAMS
        assert "entry 1: unknown source 'nowhere'" in str(many.value)
        # Nothing of the batch was stored, not even its good entry, and nothing is served back.
        got = client.cache_get_many(
            [
                {"artist": "Björk", "album": "Homogenic", "source": "musicbrainz"},
                {"artist": "Björk", "album": "Debut", "source": "nowhere"},
            ]
        )
        assert got == [None, None]


def test_cache_put_and_put_many_refuse_the_same_source_with_the_same_error(
    local: LocalServer,
) -> None:
    with local.client() as client:
        with pytest.raises(RemoteError) as put:
            client.cache_put("Björk", "Homogenic", "Nowhere", data=1)
        with pytest.raises(RemoteError) as many:
            client.cache_put_many([entry("Nowhere")])
    assert put.value.rpc_code == many.value.rpc_code == INVALID_PARAMS
    reason = str(put.value).removeprefix("cache.put: ")
    assert reason.startswith("unknown source 'Nowhere'; known sources: ")
    assert many.value.data == {"errors": [{"index": 0, "error": reason}]}


def test_cache_put_many_stores_a_source_the_config_adds() -> None:
    with local_server(cache={"sources": ["bandcamp"]}) as local, local.client() as client:
        assert client.cache_put_many([entry("Bandcamp")]) == {"stored": 1}
        got = client.cache_get("björk", "homogenic", "bandcamp")
        assert got is not None and got["source"] == "bandcamp"


def test_reads_of_unknown_sources_are_counted_in_one_bucket(local: LocalServer) -> None:
    with local.client() as client:
        keys = [{"artist": "a", "album": "b", "source": f"made-up-{n}"} for n in range(500)]
        client.cache_get_many(keys)
        client.cache_get("a", "b", "another made-up one")
        client.cache_get("a", "b", " MusicBrainz ")
        by_source = client.stats()["cache"]["by_source"]
    assert by_source[OTHER]["misses"] == 501
    assert by_source["musicbrainz"]["misses"] == 1
    assert not [name for name in by_source if name.startswith("made-up")]


def test_with_any_source_accepted_the_counters_stay_bounded() -> None:
    sources = Sources(["*"])
    for n in range(MAX_COUNTED_SOURCES * 3):
        sources.count(f"s{n}", hit=n % 2 == 0)
    assert len(sources.counted()) == MAX_COUNTED_SOURCES + 1
    assert sources.misses[OTHER] + sources.hits[OTHER] == MAX_COUNTED_SOURCES * 2
    assert sources.check("Anything") == "anything"
    with pytest.raises(UnknownSource, match="known sources: musicbrainz"):
        Sources(["musicbrainz"]).check("discogs")
