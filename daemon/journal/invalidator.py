"""Drop the cached API answers of every album the journal's track events made stale."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.events import TrackEvent, invalidation_keys
from daemon.stores import cache

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
