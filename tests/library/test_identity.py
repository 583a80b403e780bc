"""The identity rules every reader shares: first id wins, fallbacks get suffixes, coded warnings."""

from __future__ import annotations

from typing import Any

from daemon.library import LibraryWarning, WarningCode
from daemon.library.identity import MAX_LISTED_IDS, TrackKeys, fallback_id, row_fallback_id
from daemon.models import Track

# What fallback_id() is computed from, for a track with tags and no location.
TAGS: dict[str, Any] = {"location": None, "name": "n", "artist": "a", "album": "b"}
TAGS.update(total_time=5, track_number=3, disc_number=1)


def _add(keys: TrackKeys, track: Track, *, fallback: bool = False) -> str | None:
    key = keys.claim(track.persistent_id, fallback=fallback)
    if key is not None:
        keys.tracks[key] = track
    return key


def test_a_repeated_persistent_id_keeps_the_first_track() -> None:
    keys = TrackKeys()
    first = Track("A", name="first")
    assert _add(keys, first) == "A"
    assert _add(keys, Track("A", name="again")) is None
    read = keys.read("xml")
    assert read.tracks == {"A": first}
    assert read.duplicate_ids == 1
    assert [w.facts() for w in read.warnings] == [(WarningCode.DUPLICATE_IDS, 1, ("A",))]


def test_a_taken_fallback_id_gets_a_numbered_suffix_and_no_track_is_lost() -> None:
    keys = TrackKeys()
    base = fallback_id(**TAGS)
    twins = [Track(base, name="n") for _ in range(3)]
    assert [_add(keys, t, fallback=True) for t in twins] == [base, f"{base}-2", f"{base}-3"]
    read = keys.read("music-app")
    assert (read.without_persistent_id, read.duplicate_ids) == (3, 0)
    assert [w.code for w in read.warnings] == [WarningCode.WITHOUT_PERSISTENT_ID]


def test_a_row_fallback_id_is_the_fallback_id_of_its_fields() -> None:
    track = Track("", name="n", artist="a", album="b", track_number=3, disc_number=1)
    assert row_fallback_id(track.to_row(), total_time=5) == fallback_id(**TAGS)


def test_a_duplicate_warning_names_a_few_distinct_ids_and_counts_them_all() -> None:
    keys = TrackKeys()
    for pid in ["A", "A", "A", *(f"B{i}" for i in range(10)), *(f"B{i}" for i in range(10))]:
        _add(keys, Track(pid))
    [warning] = keys.warnings()
    assert warning.count == 12
    # The first MAX_LISTED_IDS repeats ("A", "A", "B0", "B1", "B2"), each named once.
    assert MAX_LISTED_IDS == 5
    assert warning.ids == ("A", "B0", "B1", "B2")
    assert warning.text.startswith("12 track(s) repeat an earlier Persistent ID")


def test_the_reader_s_own_warnings_come_first() -> None:
    keys = TrackKeys()
    _add(keys, Track("A"))
    _add(keys, Track("A"))
    own = LibraryWarning(WarningCode.MUSIC_APP, "Music.app said something")
    read = keys.read("music-app", warnings=[own])
    assert [w.code for w in read.warnings] == [WarningCode.MUSIC_APP, WarningCode.DUPLICATE_IDS]
    assert str(read.warnings[0]) == "Music.app said something"
