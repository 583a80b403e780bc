"""compat's `expect_writes`: a host's items as the daemon takes them, and a host that is never
failed by an announcement the daemon could not record."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from daemon.compat import expect_writes, expect_writes_sync
from daemon.compat.writes import wire_tracks
from tests.control.local_server import local_server

pytestmark = pytest.mark.timeout(60)


def test_a_hosts_items_become_the_daemons_tracks() -> None:
    items = [
        {"id": "4021", "name": "So What", "album": None, "genre": "Jazz", "year": "1959"},
        {"id": 7, "year": "unknown"},  # nothing left to announce
        {"id": 8, "year": 1960},
    ]
    assert wire_tracks(items, "music_id") == [
        {"music_id": 4021, "fields": {"name": "So What", "genre": "Jazz", "year": 1959}},
        {"music_id": 8, "fields": {"year": 1960}},
    ]


async def test_expect_writes_never_raises_into_the_hosts_write_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    away = {"socket_path": tmp_path / "none.sock", "logger": logging.getLogger("host")}
    with caplog.at_level(logging.DEBUG, logger="host"):
        assert await expect_writes("genre-updater", [{"id": "1", "genre": "Jazz"}], **away) == 0
        assert await expect_writes("genre-updater", [{"id": "2", "genre": "Jazz"}], **away) == 0
        assert await expect_writes("genre-updater", [{"id": "x", "genre": "Jazz"}], **away) == 0
        # Where an event loop runs already, the sync twin cannot start its own: logged too.
        assert expect_writes_sync("genre-updater", [{"id": "1", "genre": "Jazz"}], **away) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 3, warnings  # the daemon away, an id that is no number, no loop
    assert "the writes go on" in warnings[0]


def test_the_sync_twin_records_and_a_refusal_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with local_server() as local:
        with local.client() as client:
            track = client.tracks_list(limit=1)["tracks"][0]
        at = {"socket_path": local.socket, "by": "track_id", "logger": logging.getLogger("host")}
        items = [{"id": str(track["track_id"]), "genre": "Cool Jazz"}]
        assert expect_writes_sync("genre-updater", items, **at) == 1
        with caplog.at_level(logging.WARNING, logger="host"):
            refused = [{"id": "999999", "genre": "X"}]
            assert expect_writes_sync("genre-updater", refused, **at) == 0
    assert "no track has track_id 999999" in caplog.records[0].getMessage()
