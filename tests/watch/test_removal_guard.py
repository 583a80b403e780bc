"""The mass-removal guard on its own: what is held, for how long, and what lets it through."""

from __future__ import annotations

from structlog.testing import capture_logs

from daemon.events import TrackAdded, TrackEvent, TrackRemoved
from daemon.models import Track
from daemon.watch.removal_guard import RemovalGuard

ACCEPT = "/opt/bin/musicd rescan --accept-removals --config /home/me/musicd.toml"


def removals(n: int) -> list[TrackEvent]:
    return [TrackRemoved(Track(f"{i:016X}")) for i in range(n)]


def test_a_small_removal_passes() -> None:
    guard = RemovalGuard(ratio=0.5, confirm_seconds=60, accept_command=ACCEPT)
    events = removals(5)
    assert guard.check(events, baseline_size=10, accept=False, now=0.0) == (events, {})
    assert guard.held == {} and guard.since is None


def test_a_mass_removal_is_held_and_other_events_pass() -> None:
    guard = RemovalGuard(ratio=0.5, confirm_seconds=60, accept_command=ACCEPT)
    added = TrackAdded(Track("NEW"))
    with capture_logs() as logs:
        kept, held = guard.check([*removals(6), added], baseline_size=10, accept=False, now=5.0)
    assert kept == [added]
    # The hint names the command as the daemon's own invocation gives it.
    assert logs[0]["hint"] == f"run '{ACCEPT}' if the tracks really were deleted"
    assert set(held) == {f"{i:016X}" for i in range(6)}
    assert guard.held == held and guard.since == 5.0


def test_losing_every_track_is_held_even_at_ratio_one() -> None:
    guard = RemovalGuard(ratio=1.0, confirm_seconds=60, accept_command=ACCEPT)
    kept, held = guard.check(removals(4), baseline_size=4, accept=False, now=0.0)
    assert kept == [] and len(held) == 4


def test_the_same_removal_is_confirmed_after_confirm_seconds() -> None:
    guard = RemovalGuard(ratio=0.5, confirm_seconds=60, accept_command=ACCEPT)
    events = removals(8)
    guard.check(events, baseline_size=10, accept=False, now=0.0)
    # Seen again too soon: still held, and the hold keeps its start.
    assert guard.check(events, baseline_size=10, accept=False, now=59.0)[0] == []
    assert guard.since == 0.0
    assert guard.check(events, baseline_size=10, accept=False, now=60.0) == (events, {})
    assert guard.held == {} and guard.since is None


def test_a_larger_removal_starts_the_hold_again() -> None:
    guard = RemovalGuard(ratio=0.5, confirm_seconds=60, accept_command=ACCEPT)
    guard.check(removals(6), baseline_size=10, accept=False, now=0.0)
    kept, held = guard.check(removals(8), baseline_size=10, accept=False, now=100.0)
    assert kept == [] and len(held) == 8 and guard.since == 100.0


def test_accepting_lets_it_through_and_clears_the_hold() -> None:
    guard = RemovalGuard(ratio=0.5, confirm_seconds=3600, accept_command=ACCEPT)
    events = removals(8)
    guard.check(events, baseline_size=10, accept=False, now=0.0)
    assert guard.check(events, baseline_size=10, accept=True, now=1.0) == (events, {})
    assert guard.held == {} and guard.since is None


def test_a_scan_without_the_removal_clears_the_hold() -> None:
    guard = RemovalGuard(ratio=0.5, confirm_seconds=60, accept_command=ACCEPT)
    guard.check(removals(8), baseline_size=10, accept=False, now=0.0)
    assert guard.check([], baseline_size=10, accept=False, now=1.0) == ([], {})
    assert guard.held == {} and guard.since is None
