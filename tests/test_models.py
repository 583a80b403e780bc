from __future__ import annotations

import unicodedata

import pytest

from daemon.models import TRACK_FIELDS, Track, album_key, normalize_name


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Björk", unicodedata.normalize("NFD", "Björk")),
        ("Sigur Rós", "SIGUR RÓS"),
        ("  Kind   of\tBlue ", "kind of blue"),
        ("Straße", "STRASSE"),
        ("\uff46\uff55\uff4c\uff4c", "full"),  # fullwidth letters
        ("Apple\u00a0Music", "apple music"),
    ],
)
def test_names_that_differ_only_in_form_normalise_equal(a: str, b: str) -> None:
    assert normalize_name(a) == normalize_name(b)


def test_different_names_stay_different() -> None:
    assert normalize_name("Homogenic") != normalize_name("Homogenic (Live)")


def test_track_row_round_trip_keeps_every_field() -> None:
    t = Track(
        "ABCDEF0123456789",
        name="n",
        artist="a",
        album="b",
        year=1999,
        compilation=True,
        disc_number=1,
        track_number=2,
        date_added="2020-01-01T00:00:00Z",
        disabled=True,
    )
    assert Track.from_row(t.to_row()) == t
    assert list(t.to_dict()) == list(TRACK_FIELDS)


def test_changed_fields_names_only_what_changed() -> None:
    old = Track("P", name="x", album="A", genre="Jazz")
    new = Track("P", name="x", album="B", genre="Bop")
    assert old.changed_fields(new) == ("album", "genre")


def test_album_keys_cover_track_artist_and_album_artist() -> None:
    t = Track("P", artist="Miles Davis Quintet", album_artist="Miles Davis", album="Relaxin'")
    assert t.album_keys() == {
        album_key("Miles Davis Quintet", "Relaxin'"),
        album_key("Miles Davis", "Relaxin'"),
    }
    assert Track("P", artist="x").album_keys() == frozenset()


def test_track_fields_are_the_fields_of_track_in_order() -> None:
    # The wire and snapshot order: a reordered Track changes what programs read, so it is
    # written out here rather than derived.
    assert TRACK_FIELDS == (
        "persistent_id",
        "name",
        "artist",
        "album_artist",
        "album",
        "genre",
        "year",
        "compilation",
        "disc_number",
        "track_number",
        "date_added",
        "date_modified",
        "kind",
        "track_type",
        "disabled",
        "track_id",
        "music_id",
        "database_id",
    )
    assert Track.from_row(list(TRACK_FIELDS)).to_row() == list(TRACK_FIELDS)
