"""Whose write a modification is: the rule that matches what a scan found with the writes
programs announced (`writes.expect`, stored by daemon/stores/expectations.py).

A modification is a program's when every field it changed, less those that move by themselves,
is in one unexpired expectation of that program for that track, with the same new value. Its
event then carries the program's name as `origin` and the expectation is consumed, in the
transaction that records the event. Anything else is nobody's we know (`origin: None`): a
person's edit, or a program that announced nothing. An expectation a modification does not
match (another value, more fields changed) stays until it is matched or expires.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import unicodedata
from collections.abc import Sequence
from typing import Any, Final

from daemon.events import AnyEvent, TrackModified
from daemon.models import APP_ID_FIELDS
from daemon.stores import expectations
from daemon.stores.expectations import Expectation

# Fields that change with no one asking: Music.app stamps date_modified on any edit, and its
# own numbers for a track change between launches of the app. They never make a modification
# somebody else's, and an announcement of them alone means nothing.
MOVES_BY_ITSELF: Final = frozenset({"date_modified", *APP_ID_FIELDS})


def _same(value: Any, expected: Any) -> bool:
    # macOS hands out decomposed (NFD) text and programs mostly send composed (NFC): the same
    # name either way.
    if isinstance(value, str) and isinstance(expected, str):
        return unicodedata.normalize("NFC", value) == unicodedata.normalize("NFC", expected)
    return type(value) is type(expected) and value == expected


def matching(event: TrackModified, candidates: Sequence[Expectation]) -> Expectation | None:
    """The oldest of a track's unexpired expectations that this modification fulfils, if any."""
    changed = [name for name in event.changed if name not in MOVES_BY_ITSELF]
    if not changed:
        return None
    for expectation in candidates:
        wanted = expectation.fields
        if all(
            name in wanted and _same(getattr(event.new, name), wanted[name]) for name in changed
        ):
            return expectation
    return None


def tag(conn: sqlite3.Connection, events: Sequence[AnyEvent], now: float) -> list[AnyEvent]:
    """The events with the origin of each modification an expectation matches, consuming
    those expectations (in the caller's transaction, the one that records the events)."""
    # A scan that only renumbered tracks (Music.app's ids after a restart, every track at
    # once) asks nothing of the table.
    modified = [
        e
        for e in events
        if isinstance(e, TrackModified) and not MOVES_BY_ITSELF.issuperset(e.changed)
    ]
    if not modified:
        return list(events)
    live = expectations.live_for(conn, (e.persistent_id for e in modified), now)
    if not live:
        return list(events)
    tagged: list[AnyEvent] = []
    used: list[int] = []
    for event in events:
        if isinstance(event, TrackModified):
            candidates = live.get(event.persistent_id, [])
            found = matching(event, candidates)
            if found is not None:
                # A track modified twice in one batch cannot use one announcement twice.
                candidates.remove(found)
                used.append(found.rowid)
                tagged.append(dataclasses.replace(event, origin=found.origin))
                continue
        tagged.append(event)
    expectations.consume(conn, used)
    return tagged
