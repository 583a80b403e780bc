"""Whose write a modification is (journal/origins.py): announced writes matched with what a scan
recorded, on a real database file, in the transaction that records the events."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.events import AnyEvent, TrackAdded, TrackModified
from daemon.journal.recorder import _record as record_scan
from daemon.models import Track
from daemon.stores import expectations
from daemon.stores.database import Database, open_database

BEFORE = Track(
    "AAAA000000000001",
    name="So What",
    artist="Miles Davis",
    album="Kind of Blue",
    genre="Jazz",
    year=1958,
    date_modified="2020-01-01T00:00:00Z",
    track_id=7,
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path)
    yield database
    database.close()


def expect(db: Database, fields: dict[str, Any], *, origin: str = "genre-updater") -> None:
    with db.transaction() as tx:
        expectations.add(
            tx, origin, [(BEFORE.persistent_id, fields)], now=time.time(), ttl_seconds=600
        )


def modified(**new: Any) -> TrackModified:
    after = dataclasses.replace(BEFORE, **new)
    return TrackModified(BEFORE, after, BEFORE.changed_fields(after))


def record(db: Database, events: list[AnyEvent]) -> list[AnyEvent]:
    with db.transaction() as tx:
        return record_scan(tx, events, None)


def origin_of(db: Database, event: TrackModified) -> str | None:
    """The origin the modification is recorded with."""
    [recorded] = record(db, [event])
    assert isinstance(recorded, TrackModified)
    return recorded.origin


def pending(db: Database) -> int:
    return expectations.pending(db.read_conn)


def test_a_modification_with_exactly_the_announced_values_carries_the_origin_and_consumes_it(
    db: Database,
) -> None:
    expect(db, {"genre": "Cool Jazz", "year": 1959})
    assert origin_of(db, modified(genre="Cool Jazz", year=1959)) == "genre-updater"
    assert pending(db) == 0
    assert origin_of(db, modified(genre="Cool Jazz", year=1959)) is None


def test_some_of_the_announced_fields_changing_is_still_the_programs_write(db: Database) -> None:
    # The genre was already what the program wrote: only the year comes back changed.
    expect(db, {"genre": "Jazz", "year": 1959})
    assert origin_of(db, modified(year=1959)) == "genre-updater"


def test_another_value_is_a_persons_edit_and_the_expectation_stays(db: Database) -> None:
    expect(db, {"genre": "Cool Jazz"})
    assert origin_of(db, modified(genre="Bebop")) is None
    assert pending(db) == 1
    assert origin_of(db, modified(genre="Cool Jazz")) == "genre-updater"


def test_more_fields_than_announced_is_a_persons_edit_and_the_expectation_stays(
    db: Database,
) -> None:
    expect(db, {"genre": "Cool Jazz"})
    assert origin_of(db, modified(genre="Cool Jazz", name="So What (Live)")) is None
    assert pending(db) == 1


def test_date_modified_and_music_apps_ids_do_not_count_as_more_fields(db: Database) -> None:
    expect(db, {"genre": "Cool Jazz"})
    event = modified(
        genre="Cool Jazz", date_modified="2026-12-04T00:00:00Z", track_id=8, music_id=9
    )
    assert set(event.changed) == {"genre", "date_modified", "track_id", "music_id"}
    assert origin_of(db, event) == "genre-updater"


def test_a_change_of_what_moves_by_itself_alone_uses_no_expectation(db: Database) -> None:
    expect(db, {"genre": "Cool Jazz"})
    assert origin_of(db, modified(date_modified="2026-12-04T00:00:00Z")) is None
    assert pending(db) == 1


def test_an_expired_expectation_tags_nothing_and_waits_for_housekeeping(db: Database) -> None:
    with db.transaction() as tx:
        expectations.add(
            tx, "genre-updater", [(BEFORE.persistent_id, {"genre": "Cool Jazz"})],
            now=time.time() - 700, ttl_seconds=600,
        )  # fmt: skip
    assert origin_of(db, modified(genre="Cool Jazz")) is None
    assert pending(db) == 1
    with db.transaction() as tx:
        assert expectations.drop_expired(tx, time.time()) == 1
    assert pending(db) == 0


def test_names_compare_composed_or_decomposed_but_values_keep_their_type(db: Database) -> None:
    expect(db, {"artist": "Bj\u00f6rk", "year": 1959})
    assert origin_of(db, modified(artist="Bjo\u0308rk", year=1959)) == "genre-updater"
    expect(db, {"genre": "1959"})
    assert origin_of(db, modified(genre=None, year=1959)) is None


def test_the_oldest_matching_program_is_named_and_others_keep_theirs(db: Database) -> None:
    expect(db, {"genre": "Cool Jazz"}, origin="first")
    expect(db, {"genre": "Cool Jazz"}, origin="second")
    assert origin_of(db, modified(genre="Cool Jazz")) == "first"
    assert pending(db) == 1


def test_additions_and_a_second_announcement_of_a_track(db: Database) -> None:
    expect(db, {"genre": "Cool Jazz"})
    expect(db, {"year": 1959})  # the same program again: one expectation of both fields
    assert pending(db) == 1
    added, changed = record(
        db, [TrackAdded(Track("BBBB000000000002")), modified(genre="Cool Jazz", year=1959)]
    )
    assert added.origin is None  # type: ignore[union-attr]
    assert changed.origin == "genre-updater"  # type: ignore[union-attr]


def test_the_expectation_is_consumed_in_the_transaction_that_records_the_event(
    db: Database,
) -> None:
    expect(db, {"genre": "Cool Jazz"})
    with pytest.raises(RuntimeError), db.transaction() as tx:
        record_scan(tx, [modified(genre="Cool Jazz")], None)
        raise RuntimeError("the commit failed")
    assert pending(db) == 1
    assert origin_of(db, modified(genre="Cool Jazz")) == "genre-updater"
    assert pending(db) == 0
