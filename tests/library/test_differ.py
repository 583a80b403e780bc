from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daemon.events import TrackAdded, TrackModified, TrackRemoved, invalidation_keys
from daemon.library.differ import diff_tracks
from daemon.models import Track, album_key


def lib(*tracks: Track) -> dict[str, Track]:
    return {t.persistent_id: t for t in tracks}


def test_added_modified_removed_are_reported_with_old_and_new_values() -> None:
    a = Track("A", name="One", artist="X", album="Al")
    b = Track("B", name="Two", artist="X", album="Al")
    c = Track("C", name="Three")
    b2 = Track("B", name="Two", artist="X", album="Al (Remaster)")
    events = diff_tracks(lib(a, b).values(), lib(b2, c))
    assert events == [
        TrackRemoved(a),
        TrackModified(b, b2, ("album",)),
        TrackAdded(c),
    ]


def test_identical_libraries_produce_no_events() -> None:
    a = Track("A", name="One")
    assert diff_tracks(lib(a).values(), lib(Track("A", name="One"))) == []


def test_removed_track_invalidates_its_album_under_both_artists() -> None:
    t = Track("A", artist="Quintet", album_artist="Miles", album="Cookin'")
    keys = invalidation_keys(TrackRemoved(t))
    assert keys == {album_key("Quintet", "Cookin'"), album_key("Miles", "Cookin'")}


def test_album_rename_invalidates_the_old_album_only() -> None:
    old = Track("A", artist="X", album="Old")
    new = Track("A", artist="X", album="New")
    assert invalidation_keys(TrackModified(old, new, ("album",))) == {album_key("X", "Old")}


def test_genre_edit_or_addition_invalidates_nothing() -> None:
    old = Track("A", artist="X", album="Al", genre="Rock")
    new = Track("A", artist="X", album="Al", genre="Pop")
    assert invalidation_keys(TrackModified(old, new, ("genre",))) == frozenset()
    assert invalidation_keys(TrackAdded(new)) == frozenset()


def test_case_only_album_edit_keeps_the_same_cache_key() -> None:
    old = Track("A", artist="X", album="kind of blue")
    new = Track("A", artist="X", album="Kind Of Blue")
    assert invalidation_keys(TrackModified(old, new, ("album",))) == frozenset()


names = st.sampled_from(["a", "b", "c", None])
tracks = st.builds(
    Track,
    persistent_id=st.sampled_from("0123456789"),
    name=names,
    album=names,
    year=st.sampled_from([None, 1999, 2000]),
)


@given(st.lists(tracks), st.lists(tracks))
def test_applying_the_diff_to_old_gives_new(old_list: list[Track], new_list: list[Track]) -> None:
    old = lib(*old_list)
    new = lib(*new_list)
    result = dict(old)
    for event in diff_tracks(old.values(), new):
        if isinstance(event, TrackRemoved):
            del result[event.persistent_id]
        elif isinstance(event, TrackModified):
            assert result[event.persistent_id] == event.old
            result[event.persistent_id] = event.new
        else:
            assert event.persistent_id not in result
            result[event.persistent_id] = event.track
    assert result == new
