"""The daemon's lifecycle against real processes: the journal stays bounded while the library is
only rescanned, and shutdown keeps its budget with another program reading the database."""

from __future__ import annotations

import signal
import sqlite3

import pytest

from tests.support import daemon_env, journal_seqs, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.mark.slow
def test_journal_trims_by_age_while_only_rescans_happen() -> None:
    # 0.00002 days is 1.7 s: scans older than that go at the next maintenance round.
    with daemon_env(
        journal={"max_age_days": 0.00002}, cache={"cleanup_interval_seconds": 0.3}
    ) as d:
        d.start_built()
        with d.client() as client:
            for _ in range(5):
                client.rescan()
            # The position those scans reached; on a busy machine some of their rows may be
            # trimmed already, so it comes from the daemon, not from the rows still there.
            old_head = client.status()["last_seq"]
        assert old_head >= 10
        # Only scans from now on: no track event moves the daemon's own cursors.
        mark = d.mark()
        with d.client() as client:
            client.rescan()
        d.wait_log("maintenance_finished", after=mark, timeout=20)
        wait_for(
            lambda: min(journal_seqs(d.state_dir), default=old_head + 1) > old_head,
            timeout=20,
            what="the old scan rows trimmed by age",
        )
        cursors = dict(
            sqlite3.connect(f"{(d.state_dir / 'musicd.db').as_uri()}?mode=ro", uri=True)
            .execute("SELECT consumer, seq FROM cursors")
            .fetchall()
        )
        # Both of the daemon's consumers have their row from the start.
        assert set(cursors) == {"musicd.snapshot", "musicd.cache"}


@pytest.mark.slow
def test_journal_trims_by_count_while_only_rescans_happen() -> None:
    # max_events cannot be set below 1000: 600 rescans make 1200 scan rows.
    with daemon_env(journal={"max_events": 1000}, cache={"cleanup_interval_seconds": 0.3}) as d:
        d.start_built()
        with d.client() as client:
            for _ in range(600):
                client.rescan()
        wait_for(
            lambda: len(journal_seqs(d.state_dir)) <= 1000,
            timeout=20,
            what="the journal trimmed to its newest 1000 events",
        )
        seqs = journal_seqs(d.state_dir)
        # More than 1000 events were made and the oldest trimmed: the newest 1000 at most stay.
        assert len(seqs) <= 1000 < seqs[-1]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the newest ones are kept


def test_sigterm_with_an_outside_reader_exits_in_time() -> None:
    with daemon_env() as d:
        d.start_built()
        with d.client() as client:
            for i in range(10):
                client.cache_put(f"Artist {i}", "Album", "musicbrainz", data={"year": 1900 + i})
        # Another program holds a read transaction on the database, as the README invites.
        reader = sqlite3.connect(f"{(d.state_dir / 'musicd.db').as_uri()}?mode=ro", uri=True)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM api_cache").fetchone()
            # Acknowledged after the reader's snapshot: no checkpoint can fold these in while
            # it reads, so they are in the WAL alone when the daemon stops.
            with d.client() as client:
                for i in range(10, 20):
                    client.cache_put(f"Artist {i}", "Album", "musicbrainz", data={"year": 1900 + i})
            mark = d.mark()
            # The 5 s is the daemon's own budget; the wait here is only a generous bound.
            status, _seconds = d.stop(signal.SIGTERM, timeout=30)
            assert status == 0, d.stderr()[-2000:]
            [finished] = [e for e in d.logs()[mark:] if e["event"] == "final_checkpoint_finished"]
            assert finished["busy"], finished  # the reader held the fold back; nobody waited
            assert not d.find_logs("final_checkpoint_abandoned")
        finally:
            reader.execute("COMMIT")
            reader.close()
        d.start()
        with d.client() as client:
            for i in range(20):
                entry = client.cache_get(f"Artist {i}", "Album", "musicbrainz")
                assert entry is not None and entry["data"] == {"year": 1900 + i}
