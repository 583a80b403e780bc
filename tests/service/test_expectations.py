"""`writes.expect` on an in-process daemon: tracks named by Music.app's numbers, what it
refuses, and the housekeeping that drops and counts what expired unmet."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from daemon.control.protocol import INVALID_PARAMS
from daemon.errors import RemoteError
from daemon.stores import expectations
from tests.control.local_server import LocalServer


def stored(local: LocalServer) -> list[tuple[str, str, str]]:
    return local.daemon.db.read_conn.execute(
        "SELECT persistent_id, origin, fields FROM expectations ORDER BY rowid"
    ).fetchall()


def test_a_track_named_by_track_id_is_stored_under_its_persistent_id(local: LocalServer) -> None:
    with local.client() as client:
        track = client.tracks_list(limit=1)["tracks"][0]
        assert track["track_id"] is not None
        tracks = [{"track_id": track["track_id"], "fields": {"genre": "Cool Jazz"}}]
        assert client.expect_writes("genre-updater", tracks) == 1
    assert stored(local) == [(track["persistent_id"], "genre-updater", '{"genre":"Cool Jazz"}')]


def test_an_unknown_number_is_refused_in_one_line_and_nothing_is_stored(
    local: LocalServer,
) -> None:
    with local.client() as client:
        known = client.tracks_list(limit=1)["tracks"][0]["persistent_id"]
        tracks = [
            {"persistent_id": known, "fields": {"year": 1959}},
            {"track_id": 999_999, "fields": {"year": 1959}},
        ]
        with pytest.raises(RemoteError, match="tracks\\[1\\]: no track has track_id 999999") as err:
            client.expect_writes("genre-updater", tracks)
        assert err.value.rpc_code == INVALID_PARAMS and "\n" not in str(err.value)
        with pytest.raises(RemoteError, match="param 'origin' is invalid") as bad:
            client.expect_writes("Genre Updater", tracks[:1])
        assert bad.value.rpc_code == INVALID_PARAMS
    assert stored(local) == []


def test_expired_expectations_are_dropped_by_housekeeping_and_counted(local: LocalServer) -> None:
    with local.client() as client:
        known = client.tracks_list(limit=1)["tracks"][0]["persistent_id"]
        tracks = [{"persistent_id": known, "fields": {"year": 1959}}]
        client.expect_writes("genre-updater", tracks, ttl_seconds=0.001)
        client.expect_writes("other", tracks)
        assert client.status()["expectations"] == {"pending": 2, "expired": 0}
        time.sleep(0.01)  # past the first one's time
        with capture_logs() as logs:
            local.call(local.daemon.housekeeping.maintain_once)
        finished = [e for e in logs if e["event"] == "maintenance_finished"]
        assert finished and finished[0]["expectations_expired"] == 1
        assert client.status()["expectations"] == {"pending": 1, "expired": 1}
        assert client.stats()["expectations"] == {"pending": 1, "expired": 1}
    assert [origin for _, origin, _ in stored(local)] == ["other"]


def test_the_table_is_bounded(local: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expectations, "MAX_PENDING", 1)
    with local.client() as client:
        known = client.tracks_list(limit=2)["tracks"]
        client.expect_writes(
            "a", [{"persistent_id": known[0]["persistent_id"], "fields": {"year": 1}}]
        )
        with pytest.raises(RemoteError, match="more than 1 announced writes are waiting"):
            client.expect_writes(
                "a", [{"persistent_id": known[1]["persistent_id"], "fields": {"year": 1}}]
            )
