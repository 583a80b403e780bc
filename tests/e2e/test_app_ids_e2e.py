"""The numbers Music.app addresses a track by travel with it: found by `tracks.get` and
`tracks.list`; `cache.invalidate_many` drops several albums in one request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daemon.errors import RemoteError
from tests.support import DaemonProc, daemon_env

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProc]:
    with daemon_env() as d:
        d.start_built()
        yield d
        d.stop()


def test_tracks_are_found_by_the_xml_track_id(daemon: DaemonProc) -> None:
    with daemon.client() as client:
        pages = client.tracks_list()["tracks"]
        first = pages[0]
        assert first["track_id"] is not None
        assert first["music_id"] is None and first["database_id"] is None
        assert client.track(track_id=first["track_id"]) == first
        assert client.track(first["persistent_id"]) == first
        assert client.track(music_id=first["track_id"]) is None
        wanted = [t["track_id"] for t in pages[1:3]] + [999_999]
        found = client.tracks_list(by="track_id", ids=wanted)
        assert [t["persistent_id"] for t in found["tracks"]] == sorted(
            t["persistent_id"] for t in pages[1:3]
        )
        assert found["next"] is None


def test_a_lookup_names_exactly_one_id(daemon: DaemonProc) -> None:
    with daemon.client() as client:
        with pytest.raises(RemoteError, match="exactly one of"):
            client.track()
        with pytest.raises(RemoteError, match=r"\(got persistent_id, track_id\)"):
            client.track("ABC", track_id=1)
        with pytest.raises(RemoteError, match="give by and ids together"):
            client.tracks_list(by="music_id")


def test_invalidate_many_drops_each_album_in_one_request(daemon: DaemonProc) -> None:
    with daemon.client() as client:
        for artist, album in (("A", "One"), ("A", "Two"), ("B", "Three")):
            for source in ("musicbrainz", "discogs"):
                client.cache_put(artist, album, source, data={"year": 2000})
        assert client.invalidate_many([("a", "ONE"), ("B", "Three"), ("A", "One")]) == 4
        assert client.cache_get("A", "Two", "discogs") is not None
        assert client.cache_get("A", "One", "musicbrainz") is None
