"""The mass-removal guard: a library that suddenly lost most of its tracks is held, not applied.

A library that lost most of its tracks at once is more often a half-synced or mis-exported
file than a real deletion, and applying it would throw away cached answers that took hours of
rate-limited lookups to gather. So such a removal is held until a later scan, at least
`library.mass_removal_confirm_seconds` after the first, still finds the same tracks gone, or
until the user accepts it (`rescan --accept-removals`).
"""

from __future__ import annotations

import structlog

from daemon.events import TrackEvent, TrackRemoved
from daemon.models import Track

log = structlog.get_logger(__name__)


class RemovalGuard:
    """Holds a mass removal until a later scan confirms it (or the user accepts it)."""

    def __init__(self, *, ratio: float, confirm_seconds: float, accept_command: str) -> None:
        # Removing more than this share of the baseline at once is held.
        self.ratio = ratio
        self.confirm_seconds = confirm_seconds
        # `musicd rescan --accept-removals` as this daemon's user can run it, for the hint.
        self.accept_command = accept_command
        # The tracks whose removal is held, by persistent id, and since when.
        self.held: dict[str, Track] = {}
        self.since: float | None = None

    def check(
        self, events: list[TrackEvent], *, baseline_size: int, accept: bool, now: float
    ) -> tuple[list[TrackEvent], dict[str, Track]]:
        """The events to apply, and the tracks whose removal is held (kept in the baseline)."""
        removed = [e for e in events if isinstance(e, TrackRemoved)]
        total = baseline_size
        if accept or not removed or total == 0:
            self.clear()
            return events, {}
        share = len(removed) / total
        # Losing every track at once is held whatever the configured share: a ratio of 1.0
        # would otherwise let an empty (half-synced, mis-exported) library file through.
        if share <= self.ratio and len(removed) < total:
            self.clear()
            return events, {}
        held_ids = {e.persistent_id for e in removed}
        if self.held and held_ids <= set(self.held) and self.since is not None:
            if now - self.since >= self.confirm_seconds:
                log.warning("mass_removal_confirmed", removed=len(removed), tracks=total)
                self.clear()
                return events, {}
        else:
            self.since = now
        self.held = {e.persistent_id: e.track for e in removed}
        log.warning(
            "mass_removal_held",
            removed=len(removed),
            tracks=total,
            share=round(share, 3),
            hint=f"run '{self.accept_command}' if the tracks really were deleted",
        )
        kept: list[TrackEvent] = [e for e in events if not isinstance(e, TrackRemoved)]
        return kept, dict(self.held)

    def clear(self) -> None:
        self.held = {}
        self.since = None
