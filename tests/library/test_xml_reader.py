"""The streaming XML library reader, checked against plistlib on real and synthetic files."""

from __future__ import annotations

import hashlib
import io
import os
import plistlib
import re
import stat
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from daemon.errors import LibraryChangedDuringRead, LibraryReadError
from daemon.library import FileStat, LibraryRead
from daemon.library.identity import fallback_id
from daemon.library.xml_reader import check_unchanged, parse_library, read_library_xml
from daemon.models import Track
from tests.support import PLIST_KEYS

REAL_LIBRARIES = (
    Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "real-libraries"
)
REAL_FILES = sorted(REAL_LIBRARIES.glob("*.xml")) if REAL_LIBRARIES.is_dir() else []
needs_real_files = pytest.mark.skipif(not REAL_FILES, reason=f"{REAL_LIBRARIES} is absent")

FALLBACK_TAGS = ("Name", "Artist", "Album", "Total Time", "Track Number", "Disc Number")
DOCTYPE = (
    b'<!DOCTYPE plist PUBLIC "-//Apple Computer//DTD PLIST 1.0//EN" '
    b'"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
)


# -- the oracle: plistlib plus the documented rules


def documented_fallback(raw: dict[str, Any]) -> str:
    if raw.get("Location"):
        description = "location\0" + raw["Location"]
    else:
        values = (raw.get(key) for key in FALLBACK_TAGS)
        description = "tags\0" + "\0".join("" if v is None else str(v) for v in values)
    return "~" + hashlib.blake2b(description.encode(), digest_size=8).hexdigest()[:15]


def expected_read(doc: dict[str, Any]) -> tuple[dict[str, Track], int, int]:
    """(tracks, without_persistent_id, duplicate_ids) as the module docstring promises."""
    tracks: dict[str, Track] = {}
    without = duplicates = 0
    for raw in doc.get("Tracks", {}).values():
        fields: dict[str, Any] = {}
        for key, name in PLIST_KEYS.items():
            if key in raw:
                value = raw[key]
                if isinstance(value, datetime):
                    value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
                fields[name] = value
        pid = fields.pop("persistent_id", None)
        if pid:
            pid = pid.upper()
        else:
            without += 1
            pid = base = documented_fallback(raw)
            n = 1
            while pid in tracks:
                n += 1
                pid = f"{base}-{n}"
        if pid in tracks:
            duplicates += 1
            continue
        tracks[pid] = Track(pid, **fields)
    return tracks, without, duplicates


def parse(data: bytes) -> LibraryRead:
    return parse_library(io.BytesIO(data))


def assert_matches_plistlib(data: bytes) -> LibraryRead:
    read = parse(data)
    tracks, without, duplicates = expected_read(plistlib.loads(data))
    assert list(read.tracks.items()) == list(tracks.items())
    assert (read.without_persistent_id, read.duplicate_ids) == (without, duplicates)
    return read


def read_error(data: bytes) -> str:
    with pytest.raises(LibraryReadError) as info:
        parse(data)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- synthetic libraries


def make_track(i: int, **overrides: Any) -> dict[str, Any]:
    track: dict[str, Any] = {
        "Track ID": i,
        "Name": f"Song {i}",
        "Artist": "Artist & Co <live>",
        "Album": f"Album {i // 10}",
        "Genre": "Rock",
        "Kind": "MPEG audio file",
        "Size": 4_344_295 + i,
        "Total Time": 217_103,
        "Disc Number": 1,
        "Track Number": i % 12 + 1,
        "Year": 1980,
        "Date Modified": datetime(2006, 2, 14, 16, 13, 2),
        "Date Added": datetime(2006, 2, 14, 16, 12, 53),
        "Play Date": 3_518_868_190,
        "Play Date UTC": datetime(2015, 7, 4, 19, 23, 10),
        "Persistent ID": f"{0x21130E105F3B0000 + i:016X}",
        "Track Type": "File",
        "Location": f"file:///Users/me/Music/{i:04d}%20Song.mp3",
    }
    track.update(overrides)
    return {k: v for k, v in track.items() if v is not None}


def make_doc(tracks: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Major Version": 1,
        "Minor Version": 1,
        "Date": datetime(2015, 11, 24, 11, 12, 10),
        "Application Version": "12.3.1.23",
        "Music Folder": "file:///Users/me/Music/",
        "Tracks": {str(t.get("Track ID", n)): t for n, t in enumerate(tracks)},
        "Playlists": [
            {
                "Name": "Library",
                "Master": True,
                "Playlist ID": 1,
                "Smart Info": b"\x01\x01\x00\x03" * 30,
                "Playlist Items": [{"Track ID": t.get("Track ID", 0)} for t in tracks],
            }
        ],
    }
    doc.update(top)
    return doc


def library_bytes(tracks: list[dict[str, Any]], **top: Any) -> bytes:
    return plistlib.dumps(make_doc(tracks, **top), sort_keys=False)


def in_track(xml: str) -> bytes:
    """A library whose one track dict holds `xml`."""
    return raw_library(f"<dict><key>1</key><dict>{xml}</dict></dict>")


def raw_library(tracks_xml: str, *, doctype: bool = True, extra: str = "") -> bytes:
    head = b'<?xml version="1.0" encoding="UTF-8"?>\n' + (DOCTYPE if doctype else b"")
    body = f"<dict>\n{extra}<key>Tracks</key>\n{tracks_xml}\n</dict>"
    return head + f'<plist version="1.0">\n{body}\n</plist>\n'.encode()


# -- real libraries


@needs_real_files
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_library_matches_plistlib(path: Path) -> None:
    read = read_library_xml(path)
    with path.open("rb") as fh:
        tracks, without, duplicates = expected_read(plistlib.load(fh))
    assert list(read.tracks.items()) == list(tracks.items())
    assert (read.without_persistent_id, read.duplicate_ids) == (without, duplicates)
    assert read.stat == FileStat.of(path)
    assert read.source == "xml"


@needs_real_files
def test_real_ids_survive_track_id_renumbering() -> None:
    older = REAL_LIBRARIES / "jettairlines__itunesvis__data_iTunes_Music_Library.xml"
    newer = REAL_LIBRARIES / "jettairlines__itunesvis__iTunes_Music_Library.xml"
    if not (older.exists() and newer.exists()):
        pytest.skip("the jettairlines snapshot pair is absent")
    assert set(read_library_xml(older).tracks) == set(read_library_xml(newer).tracks)


@needs_real_files
def test_real_truncations_always_fail() -> None:
    data = max(REAL_FILES, key=lambda p: p.stat().st_size).read_bytes()
    assert read_error(b"") == "library file is empty"
    for tenth in range(1, 10):
        assert "(truncated or half-written?)" in read_error(data[: len(data) * tenth // 10])


# -- synthetic libraries: format variations that must read like plistlib


def test_plistlib_written_library() -> None:
    read = assert_matches_plistlib(library_bytes([make_track(i) for i in range(30)]))
    assert len(read.tracks) == 30
    assert read.warnings == []
    assert read.stat is None


def test_every_xml_read_is_full(tmp_path: Path) -> None:
    path = tmp_path / "Library.xml"
    path.write_bytes(library_bytes([make_track(i) for i in range(3)]))
    assert read_library_xml(path).full is True
    assert parse_library(io.BytesIO(path.read_bytes())).full is True


def test_crlf_line_endings_do_not_leak_carriage_returns() -> None:
    data = library_bytes([make_track(1, Comments="two\nlines", Name="a\nb")])
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    read = assert_matches_plistlib(data)
    assert not any("\r" in str(value) for t in read.tracks.values() for value in t.to_row())


def test_raw_newline_and_edge_whitespace_in_strings() -> None:
    read = assert_matches_plistlib(library_bytes([make_track(1, Name="  one\ntwo\n ")]))
    assert next(iter(read.tracks.values())).name == "  one\ntwo\n "


def test_file_without_doctype() -> None:
    data = re.sub(rb"<!DOCTYPE[^>]*>\n", b"", library_bytes([make_track(1)]))
    assert b"DOCTYPE" not in data
    assert len(assert_matches_plistlib(data).tracks) == 1


def test_unusual_top_level_key_order() -> None:
    doc = make_doc([make_track(1), make_track(2)])
    reordered = {"Playlists": doc.pop("Playlists"), "Tracks": doc.pop("Tracks"), **doc}
    reordered["Music Folder"] = reordered.pop("Music Folder")
    read = assert_matches_plistlib(plistlib.dumps(reordered, sort_keys=False))
    assert len(read.tracks) == 2


def test_big_negative_and_hex_integers() -> None:
    track = make_track(1, **{"Play Date": -1139637772, "Size": 2**40, "Track Number": 2**33})
    data = library_bytes([track, make_track(2, **{"Disc Number": -1})])
    data = data.replace(b"<integer>1980</integer>", b"<integer>0x7BC</integer>", 1)
    read = assert_matches_plistlib(data)
    first, second = read.tracks.values()
    assert (first.year, first.track_number, second.disc_number) == (1980, 2**33, -1)


def test_character_references_and_predefined_entities() -> None:
    data = raw_library(
        "<dict><key>1</key><dict><key>Persistent ID</key><string>00000000000000AA</string>"
        "<key>Name</key><string>R&#38;B &#60;live&#62; &amp; &lt;&gt;&quot;&apos;&#13;</string>"
        "</dict></dict>"
    )
    read = assert_matches_plistlib(data)
    assert read.tracks["00000000000000AA"].name == "R&B <live> & <>\"'\r"


def test_nbsp_and_localized_kind() -> None:
    kinds = ["Fichier audio AAC Apple\u00a0Music", "MPEG 오디오 파일"]
    read = assert_matches_plistlib(
        library_bytes([make_track(i, Kind=k) for i, k in enumerate(kinds)])
    )
    assert [t.kind for t in read.tracks.values()] == kinds


def test_nested_and_unusual_values_are_skipped() -> None:
    track = make_track(
        1,
        Artwork=b"\x89PNG" * 100,
        Rating=80.5,
        Tags=["a", {"b": [1, 2.5, True, False, datetime(2001, 1, 1)]}, []],
        Extra={"Tracks": {"9": {"Persistent ID": "FFFFFFFFFFFFFFFF"}}},
    )
    read = assert_matches_plistlib(library_bytes([track, make_track(2)]))
    assert len(read.tracks) == 2


def test_missing_keys_and_booleans() -> None:
    bare = {"Track ID": 1, "Persistent ID": "ABCDEF0123456789"}
    flags = make_track(2, Compilation=True, Disabled=True)
    explicit_false = make_track(3, Compilation=False, Disabled=False)
    read = assert_matches_plistlib(library_bytes([bare, flags, explicit_false]))
    first, second, third = read.tracks.values()
    assert first == Track("ABCDEF0123456789", track_id=1)
    assert (second.compilation, second.disabled) == (True, True)
    assert (third.compilation, third.disabled) == (False, False)


@pytest.mark.parametrize("tracks_xml", ["<dict/>", "<dict>\n</dict>", "<dict></dict>"])
def test_empty_tracks_dict(tracks_xml: str) -> None:
    read = parse(raw_library(tracks_xml))
    assert read.tracks == {}
    assert read.warnings == []


def test_library_without_tracks_key() -> None:
    doc = make_doc([])
    del doc["Tracks"]
    assert parse(plistlib.dumps(doc)).tracks == {}


def test_tracks_keep_file_order() -> None:
    tracks = [make_track(i) for i in (5, 3, 9, 1)]
    read = assert_matches_plistlib(library_bytes(tracks))
    assert [t.name for t in read.tracks.values()] == ["Song 5", "Song 3", "Song 9", "Song 1"]


class TrickleStream(io.RawIOBase):
    """A stream that returns at most `step` bytes per read, like a slow pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._step, len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def test_values_split_across_reads() -> None:
    data = library_bytes([make_track(i, Name=f"Ünïcødé {i} &") for i in range(5)])
    whole = parse(data)
    trickled = parse_library(cast(BinaryIO, TrickleStream(data, 7)))
    assert list(trickled.tracks.items()) == list(whole.tracks.items())


# -- identity


def test_persistent_id_is_upper_cased() -> None:
    read = parse(library_bytes([make_track(1, **{"Persistent ID": "21130e105f3b8845"})]))
    assert list(read.tracks) == ["21130E105F3B8845"]


def test_fallback_ids_follow_the_documented_rule() -> None:
    with_location = make_track(1, **{"Persistent ID": None})
    without_location = make_track(2, **{"Persistent ID": None, "Location": None})
    read = assert_matches_plistlib(library_bytes([with_location, without_location]))
    ids = list(read.tracks)
    assert ids == [documented_fallback(with_location), documented_fallback(without_location)]
    assert all(len(i) == 16 and i[0] == "~" and int(i[1:], 16) >= 0 for i in ids)
    assert ids[0] == fallback_id(
        location=with_location["Location"],
        name=None,
        artist=None,
        album=None,
        total_time=None,
        track_number=None,
        disc_number=None,
    )
    assert read.without_persistent_id == 2
    assert any("no Persistent ID" in w.text for w in read.warnings)


def test_fallback_ids_are_stable_across_reads_and_track_id_renumbering() -> None:
    tracks = [make_track(i, **{"Persistent ID": None}) for i in range(5)]
    tracks += [make_track(i, **{"Persistent ID": None, "Location": None}) for i in range(5, 10)]
    first = parse(library_bytes(tracks))
    again = parse(library_bytes(tracks))
    renumbered = parse(library_bytes([{**t, "Track ID": t["Track ID"] + 500} for t in tracks]))
    assert list(first.tracks.items()) == list(again.tracks.items())
    # The keys stay; the Track ID is kept as the field it is.
    assert list(first.tracks) == list(renumbered.tracks)
    assert [t.track_id for t in renumbered.tracks.values()] == [
        t.track_id + 500 for t in first.tracks.values() if t.track_id is not None
    ]


def test_colliding_fallback_ids_get_suffixes_and_no_track_is_lost() -> None:
    same = make_track(1, **{"Persistent ID": None, "Location": None})
    tracks = [same, {**same, "Track ID": 2, "Genre": "Pop"}, {**same, "Track ID": 3}]
    read = assert_matches_plistlib(library_bytes(tracks))
    base = documented_fallback(same)
    assert list(read.tracks) == [base, f"{base}-2", f"{base}-3"]
    assert read.tracks[f"{base}-2"].genre == "Pop"
    assert (read.without_persistent_id, read.duplicate_ids) == (3, 0)


def test_duplicate_persistent_ids_keep_the_first() -> None:
    tracks = [
        make_track(1, Name="first"),
        make_track(2, Name="second", **{"Persistent ID": make_track(1)["Persistent ID"].lower()}),
        make_track(3),
    ]
    read = assert_matches_plistlib(library_bytes(tracks))
    assert [t.name for t in read.tracks.values()] == ["first", "Song 3"]
    assert read.duplicate_ids == 1
    assert len(read.warnings) == 1
    assert make_track(1)["Persistent ID"] in read.warnings[0].text


# -- hostile files


def test_billion_laughs_is_refused_fast() -> None:
    entities = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    data = (
        f'<?xml version="1.0"?>\n<!DOCTYPE plist [<!ENTITY lol0 "lol">{entities}]>\n'
        "<plist><dict><key>Tracks</key><dict><key>1</key><dict><key>Name</key>"
        "<string>&lol9;</string></dict></dict></dict></plist>"
    ).encode()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = read_error(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 5_000_000
    assert message == "library file declares XML entities; refusing to expand them"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE plist [<!ENTITY x SYSTEM "file://{path}">]>',
        '<!DOCTYPE plist [<!ENTITY % x SYSTEM "file://{path}"> %x;]>',
        '<!DOCTYPE plist SYSTEM "file://{path}">',
    ],
)
def test_external_entities_are_never_read(tmp_path: Path, doctype: str) -> None:
    # Opening a FIFO for reading blocks until a writer appears, so any attempt to read the
    # "secret" would hang the test instead of passing.
    secret = tmp_path / "secret"
    os.mkfifo(secret)
    head = f'<?xml version="1.0"?>\n{doctype.format(path=secret)}\n'.encode()
    body = b"<plist><dict><key>Tracks</key><dict/><key>X</key><string>&x;</string></dict></plist>"
    message = read_error(head + body)
    assert "entit" in message


def test_undefined_entity_is_refused() -> None:
    data = raw_library("<dict/>", extra="<key>X</key><string>&nbsp;</string>\n")
    assert "undefined entity &nbsp;" in read_error(data)


def test_every_prefix_of_a_library_fails() -> None:
    data = library_bytes([make_track(1, Name="Zoë"), make_track(2, **{"Persistent ID": None})])
    complete = len(data.rstrip())
    for end in range(complete):
        with pytest.raises(LibraryReadError):
            parse(data[:end])
    assert len(parse(data[:complete]).tracks) == 2


def parse_peak_memory(data: bytes) -> int:
    tracemalloc.start()
    try:
        read = parse(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(read.tracks) == 1
    return peak


def test_playlist_data_is_not_kept_in_memory() -> None:
    def with_blob(size: int) -> bytes:
        playlist = {"Name": "x", "Smart Info": b"\x01" * size, "Items": [{"Track ID": 1}]}
        return library_bytes([make_track(1)], Playlists=[playlist])

    small, big = parse_peak_memory(with_blob(3_000_000)), parse_peak_memory(with_blob(15_000_000))
    # Peak memory is the read chunk and expat's buffer, not the 20 MB of base64 text.
    assert big < small + 1_000_000


# -- files that are not libraries: one-line errors, never partial results


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "library file is empty"),
        (b"   \n", "is not well-formed XML at line 2, column 1 (truncated or half-written?)"),
        (b'{"Tracks": {}}', "is not well-formed XML at line 1, column 1: not well-formed"),
        (plistlib.dumps({"a": 1}, fmt=plistlib.FMT_BINARY), "binary property list"),
        (b"<html><body/></html>", "is not a property list: its root element is <html>"),
        (plistlib.dumps([1, 2]), "its top level is a <array> instead of a <dict>"),
        (b"<plist/>", "its plist holds no dict"),
        (b"<plist><dict/><dict/></plist>", "more than one value in <plist>"),
        (raw_library("<array/>"), "has a <array> instead of a <dict> as its Tracks value"),
        (
            raw_library("<dict><key>1</key><string>x</string></dict>"),
            "<string> instead of a <dict>",
        ),
        (raw_library("<dict><key>1</key></dict>"), "has a track key without a track"),
        (in_track("<key>Name</key>"), "has a track key without a value"),
        (in_track("<key>Size</key>"), "has a track key without a value"),
        (in_track("<string>x</string>"), "has a <string> without a key in a track"),
        (in_track("<key>A</key><key>B</key>"), "has a track key without a value"),
        (in_track("<key>A</key><string><string>x</string></string>"), "without a key"),
        (in_track("<key>Year</key><integer>19x</integer>"), "invalid integer '19x'"),
        (in_track("<key>Name</key><nope/>"), "unknown element <nope>"),
        (in_track("<key>Size</key><nope/>"), "unknown element <nope>"),
        (in_track("<key>A</key><array><nope/></array>"), "unknown element <nope>"),
        (raw_library("<dict/>", extra="<key>Tracks</key><dict/>"), "second Tracks key"),
        (
            raw_library("<dict/>", extra="<key>P</key><array><nope/></array>"),
            "unknown element <nope>",
        ),
        (raw_library("<dict/>", extra="<string>x</string>"), "without a key in the top-level dict"),
        (
            raw_library("<dict/>", extra="<key>A</key><key>B</key>"),
            "no value for the top-level key 'A'",
        ),
        (raw_library("<dict/>") + b"<plist/>", "junk after document element"),
    ],
    ids=lambda v: v[:30] if isinstance(v, str) else None,
)
def test_invalid_files_raise_one_line_errors(data: bytes, expected: str) -> None:
    assert expected in read_error(data)


def test_invalid_utf8_names_the_line() -> None:
    data = library_bytes([make_track(1), make_track(2, Name="caf\u00e9")])
    bad = data.replace("café".encode(), b"caf\xe9 au lait")
    line = bad[: bad.index(b"caf\xe9")].count(b"\n") + 1
    assert read_error(bad).startswith(f"library file is not valid UTF-8 at line {line}, column ")


def test_errors_name_line_and_column() -> None:
    data = raw_library("<dict>\n  <key>1</key>\n  <dict><key>Name</key></string></dict></dict>")
    at = data.index(b"</string>")
    line = data[:at].count(b"\n") + 1
    column = at - data.rindex(b"\n", 0, at)
    where = f"at line {line}, column {column + 2}"  # expat points inside the bad end tag
    assert read_error(data) == f"library file is not well-formed XML {where}: mismatched tag"


# -- files on disk


def test_read_library_xml_reports_the_path_and_stat(tmp_path: Path) -> None:
    path = tmp_path / "Library.xml"
    path.write_bytes(library_bytes([make_track(1)]))
    read = read_library_xml(path)
    assert read.stat == FileStat.of(path)
    assert len(read.tracks) == 1
    path.write_bytes(b"")
    with pytest.raises(LibraryReadError, match=rf"^library file {path} is empty$"):
        read_library_xml(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LibraryReadError, match="does not exist"):
        read_library_xml(tmp_path / "nope.xml")


def test_directory_in_place_of_file(tmp_path: Path) -> None:
    with pytest.raises(LibraryReadError, match="is a directory, not a file"):
        read_library_xml(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_is_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "Library.xml")
    with pytest.raises(LibraryReadError, match="is not a regular file"):
        read_library_xml(tmp_path / "Library.xml")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "Library.xml"
    path.write_bytes(library_bytes([]))
    path.chmod(0)
    try:
        with pytest.raises(LibraryReadError, match="cannot be read: Permission denied"):
            read_library_xml(path)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("change", ["mtime", "size", "replaced", "deleted"])
def test_check_unchanged_detects_changes(tmp_path: Path, change: str) -> None:
    path = tmp_path / "Library.xml"
    path.write_bytes(b"<plist/>")
    before = FileStat.of(path)
    check_unchanged(path, before)
    if change == "mtime":
        os.utime(path, ns=(before.mtime_ns + 1, before.mtime_ns + 1))
    elif change == "size":
        with path.open("ab") as fh:
            fh.write(b"\n")
        os.utime(path, ns=(before.mtime_ns, before.mtime_ns))
    elif change == "replaced":
        other = tmp_path / "other.xml"
        other.write_bytes(b"<plist/>")
        os.utime(other, ns=(before.mtime_ns, before.mtime_ns))
        keep = tmp_path / "keep.xml"
        os.link(path, keep)  # keep the old inode alive so it cannot be reused
        os.replace(other, path)
    else:
        path.unlink()
    with pytest.raises(LibraryChangedDuringRead, match="changed while it was being read"):
        check_unchanged(path, before)


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.usefixtures("frequent_thread_switches")
@pytest.mark.parametrize("complete", [True, False], ids=["complete", "half-written"])
def test_file_touched_during_read_raises(tmp_path: Path, complete: bool) -> None:
    # A half-written file that changes under the reader is reported as a change, not damage.
    data = library_bytes([make_track(i) for i in range(2000)])
    path = tmp_path / "Library.xml"
    path.write_bytes(data if complete else data[: len(data) // 2])
    stop = threading.Event()

    def keep_touching() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            os.utime(path, ns=(n * 1_000_000_000, n * 1_000_000_000))

    toucher = threading.Thread(target=keep_touching)
    toucher.start()
    try:
        with pytest.raises(LibraryChangedDuringRead):
            read_library_xml(path)
    finally:
        stop.set()
        toucher.join()
