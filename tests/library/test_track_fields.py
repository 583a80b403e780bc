"""Every field of `Track` has a source in every reader: adding a field without one fails here."""

from __future__ import annotations

import re
from importlib import resources
from typing import get_args

import pytest

from daemon.control.params import AppIdField
from daemon.errors import LibraryReadError
from daemon.library import music_app, plist_tracks
from daemon.models import APP_ID_FIELDS, TRACK_FIELDS


def _script() -> str:
    return (resources.files("daemon") / "data" / "music_library.js").read_text(encoding="utf-8")


def _js_block(pattern: str) -> str:
    match = re.search(pattern, _script(), re.S)
    assert match is not None, pattern
    return match.group(1)


def test_every_track_field_has_a_key_in_the_xml_reader() -> None:
    slots = {slot for slot, _ in plist_tracks.TRACK_KEYS.values()}
    missing = [name for i, name in enumerate(TRACK_FIELDS) if i not in slots]
    # Music.app's scripting ids are not in the XML: they stay None there.
    assert missing == ["music_id", "database_id"]


def test_every_track_field_has_a_music_app_property_in_the_script() -> None:
    fields = _js_block(r"var TRACK_FIELDS = \[(.*?)\];")
    assert re.findall(r"'(\w+)'", fields) == list(TRACK_FIELDS)
    sources = _js_block(r"var SOURCES = \{(.*?)\};")
    assert re.findall(r"^\s*(\w+): \[", sources, re.M) == list(TRACK_FIELDS)
    # The XML's Track ID is the one field Music.app's scripting has no property for.
    assert re.findall(r"^\s*(\w+): \[null", sources, re.M) == ["track_id"]


def test_tracks_are_looked_up_by_each_number_music_app_addresses_them_by() -> None:
    assert set(get_args(AppIdField)) == set(APP_ID_FIELDS) <= set(TRACK_FIELDS)


def test_the_music_app_reader_refuses_a_wrongly_typed_value_in_any_field() -> None:
    good = ["ABC", "n", "a", "aa", "al", "g", 1999, False, 1, 2, None, None, "k", "File", False]
    good += [None, 7, 9]
    music_app._check_rows([good], TRACK_FIELDS)
    for n, name in enumerate(TRACK_FIELDS):
        # A string where a number or flag belongs, a list where text belongs.
        wrong = [] if isinstance(good[n], str) or good[n] is None else "1"
        row = [*good[:n], wrong, *good[n + 1 :]]
        with pytest.raises(LibraryReadError, match=f"has {name} = "):
            music_app._check_rows([row], TRACK_FIELDS)
