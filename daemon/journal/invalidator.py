"""Drop the cached API answers of every album the journal's track events made stale."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from daemon.events import TrackEvent, invalidation_keys
from daemon.journal.follow import Round
from daemon.stores import cache

log = structlog.get_logger(__name__)

CONSUMER = "musicd.cache"


@dataclass(frozen=True, slots=True)
class Invalidated:
    albums: list[tuple[str, str]]
    entries: int


def invalidate(conn: sqlite3.Connection, events: Sequence[TrackEvent]) -> Invalidated:
    """Each stale album costs O(its entries) through the cache's primary key."""
    keys: set[tuple[str, str]] = set()
    for event in events:
        keys |= invalidation_keys(event)
    ordered = sorted(keys)
    return Invalidated(ordered, cache.invalidate_keys(conn, ordered) if ordered else 0)


def report(done: Round[Invalidated]) -> None:
    """Log a round that dropped cached answers."""
    result = done.result
    if result is not None and result.albums:
        log.info(
            "cache_invalidated",
            albums=len(result.albums),
            entries=result.entries,
            sample=[list(k) for k in result.albums[:5]],
            seq=done.last_seq,
        )
