"""The database as the real daemon keeps it: acknowledged is committed, seq goes on."""

from __future__ import annotations

import signal
import sqlite3

import pytest

from daemon.client import MusicdClient
from tests.support import daemon_env, db_cache_entries, wait_for

pytestmark = pytest.mark.timeout(90)


def test_an_acknowledged_put_survives_kill_9_with_no_flush() -> None:
    with daemon_env(state={"flush_interval_seconds": 3600}) as d:
        d.start()
        with MusicdClient(d.socket) as client:
            client.cache_put("Miles Davis", "Kind of Blue", "musicbrainz", data={"year": 1959})
        d.kill()
        assert [e["data"] for e in db_cache_entries(d.state_dir)] == [{"year": 1959}]
        d.start()
        with MusicdClient(d.socket) as client:
            assert client.cache_get("miles davis", "KIND OF BLUE", "musicbrainz") is not None
        assert d.stop()[0] == 0


@pytest.mark.slow
def test_seq_goes_on_after_a_clean_stop_and_a_kill() -> None:
    with daemon_env() as d:
        seen: list[int] = []
        epochs: set[str] = set()
        for how in ("stop", "kill", "stop"):
            mark = d.mark()
            d.start()
            d.wait_log("scan_finished", after=mark)
            with MusicdClient(d.socket) as client:
                client.rescan()
                status = client.status()
            seen.append(status["last_seq"])
            epochs.add(status["epoch"])
            if how == "kill":
                d.kill()
            else:
                assert d.stop(signal.SIGTERM)[0] == 0
        assert seen == sorted(set(seen)) and len(epochs) == 1
        conn = sqlite3.connect(f"{(d.state_dir / 'musicd.db').as_uri()}?mode=ro", uri=True)
        seqs = [row[0] for row in conn.execute("SELECT seq FROM journal ORDER BY rowid")]
        conn.close()
        assert seqs == sorted(set(seqs)) and seqs[-1] == seen[-1]


def test_expired_failed_lookups_are_removed_in_the_background() -> None:
    with daemon_env(cache={"failed_ttl_seconds": 0.2, "cleanup_interval_seconds": 0.5}) as d:
        d.start()
        with MusicdClient(d.socket) as client:
            client.cache_put("A", "B", "discogs", success=False)
            client.cache_put("C", "D", "discogs", data={"year": 1})
        wait_for(
            lambda: len(db_cache_entries(d.state_dir)) == 1,
            what="the expired failed lookup deleted by the cleanup task",
        )
        done = d.wait_log("maintenance_finished")
        assert done["cache_expired"] == 1
        assert d.stop()[0] == 0
