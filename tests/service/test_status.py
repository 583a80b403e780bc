"""`status` is put together from what each part reports of itself; its answer keeps its keys,
in their order, whatever part they come from."""

from __future__ import annotations

from tests.control.local_server import LocalServer

TOP = [
    "pid",
    "version",
    "uptime_seconds",
    "started_at",
    "library",
    "last_scan_at",
    "last_scan_duration_ms",
    "last_scan_counts",
    "scan_error",
    "scans",
    "scan_in_progress",
    "last_flush_at",
    "last_flush_duration_ms",
    "flush_error",
    "flush_error_at",
    "database",
    "database_error",
    "dirty",
    "pending_events",
    "last_seq",
    "epoch",
    "subscribers",
    "expectations",
    "state_dir",
    "socket",
    "shutting_down",
    "triggers",
    "triggers_refused",
    "connections",
]
LIBRARY = [
    "path",
    "source",
    "track_count",
    "missing",
    "reader_error",
    "reader_error_at",
    "library_error",
    "read_stalled",
    "without_persistent_id",
    "duplicate_ids",
    "held_removals",
    "held_since",
    "watching",
]
DATABASE = [
    "path",
    "epoch",
    "last_seq",
    "bytes",
    "commits",
    "uncheckpointed_commits",
    "error",
    "error_at",
    "consumers_behind",
    "moved_aside",
]


def test_status_keeps_its_keys_in_their_order(local: LocalServer) -> None:
    with local.client() as client:
        status = client.call("status")
    assert list(status) == TOP
    assert list(status["library"]) == LIBRARY
    assert list(status["database"]) == DATABASE
    assert status["epoch"] == status["database"]["epoch"]
    assert status["last_seq"] == status["database"]["last_seq"]


def test_status_before_the_scanner_exists_says_nothing_is_known_of_the_library(
    local: LocalServer,
) -> None:
    # The local server never starts its scanner: the state a start is in while the baseline
    # loads.
    with local.client() as client:
        status = client.call("status")
    assert status["library"]["missing"] is None
    assert status["library"]["watching"] is None
    assert (status["scans"], status["last_scan_counts"], status["scan_in_progress"]) == (
        0,
        {},
        None,
    )
