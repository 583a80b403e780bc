"""The incremental XML reader gives exactly what the full reader gives, on every edit."""

from __future__ import annotations

import gc
import os
import re
import tempfile
import tracemalloc
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from daemon.errors import LibraryReadError
from daemon.events import TrackEvent
from daemon.library import LibraryRead, fast_xml
from daemon.library.differ import diff_changes, diff_tracks
from daemon.library.fast_xml import RUN_ENTRIES, FastXmlReader
from daemon.library.file_window import CHUNK_SIZE
from daemon.library.xml_entries import keyed_fingerprint
from daemon.library.xml_reader import read_library_xml
from daemon.models import Track
from tests.benchmarks.generate import generate_library, rename_album

REAL_LIBRARIES = (
    Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "real-libraries"
)
REAL_FILES = sorted(REAL_LIBRARIES.glob("*.xml")) if REAL_LIBRARIES.is_dir() else []
needs_real_files = pytest.mark.skipif(not REAL_FILES, reason=f"{REAL_LIBRARIES} is absent")

DOCTYPE = (
    '<!DOCTYPE plist PUBLIC "-//Apple Computer//DTD PLIST 1.0//EN" '
    '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
)
# A comment that looks like the start of the Tracks dict: the fast path must not be fooled.
TRICKY_COMMENT = "<key>Tracks</key><dict><key>1</key><dict></dict>"
ENTITIES = '<!DOCTYPE plist [ <!ENTITY a "aaaaaaaaaa"> <!ENTITY b "&a;&a;&a;&a;"> ]>\n'


# -- a library written the way Music.app writes it, with room for odd spellings

Value = tuple[str, str]  # (element, inner XML); "true"/"false" are written self-closing


@dataclass
class Lib:
    tracks: list[tuple[int, list[tuple[str, Value]]]] = field(default_factory=list)
    date: str = "2026-01-01T00:00:00Z"
    crlf: bool = False
    doctype: str = DOCTYPE
    header_comment: str = ""
    truncate_at: float | None = None

    def render(self) -> bytes:
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            self.doctype.rstrip("\n"),
            '<plist version="1.0">',
            "<dict>",
            "\t<key>Major Version</key><integer>1</integer>",
            f"\t<key>Date</key><date>{self.date}</date>",
            "\t<key>Application Version</key><string>1.4.6.32</string>",
        ]
        if self.header_comment:
            lines.append(f"\t<!-- {self.header_comment} -->")
        lines += ["\t<key>Tracks</key>", "\t<dict>"]
        for track_id, values in self.tracks:
            lines += [f"\t\t<key>{track_id}</key>", "\t\t<dict>"]
            lines += [f"\t\t\t<key>{key}</key>{element(v)}" for key, v in values]
            lines.append("\t\t</dict>")
        lines += [
            "\t</dict>",
            "\t<key>Playlists</key>",
            "\t<array>",
            "\t\t<dict>",
            "\t\t\t<key>Name</key><string>Library</string>",
            "\t\t\t<key>Smart Info</key>",
            "\t\t\t<data>",
            "\t\t\tAQEAAwAAAAIAAAAZAAAAAAAAAAcAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "\t\t\t</data>",
            "\t\t\t<key>Playlist Items</key>",
            "\t\t\t<array>",
        ]
        lines += [
            f"\t\t\t\t<dict><key>Track ID</key><integer>{track_id}</integer></dict>"
            for track_id, _ in self.tracks
        ]
        lines += ["\t\t\t</array>", "\t\t</dict>", "\t</array>", "</dict>", "</plist>", ""]
        data = "\n".join(lines).encode()
        if self.crlf:
            data = data.replace(b"\n", b"\r\n")
        if self.truncate_at is not None:
            data = data[: int(len(data) * self.truncate_at)]
        return data


def element(value: Value) -> str:
    name, inner = value
    if name in ("true", "false"):
        return f"<{name}/>"
    return f"<{name}>{inner}</{name}>"


def escape(text: str, style: str = "ref") -> str:
    if style == "cdata" and "]]>" not in text:
        return f"<![CDATA[{text}]]>"
    if style == "named":
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("&", "&#38;").replace("<", "&#60;").replace(">", "&#62;")


def base_track(i: int) -> list[tuple[str, Value]]:
    album = i // 4
    return [
        ("Track ID", ("integer", str(i))),
        ("Name", ("string", f"Song {i}")),
        ("Artist", ("string", escape(f"Artist {album % 3} & Friends"))),
        ("Album Artist", ("string", f"Artist {album % 3}")),
        ("Album", ("string", "Björk Ünïcödé" if album == 1 else f"Album {album}")),
        ("Genre", ("string", "Rock")),
        ("Kind", ("string", "Apple Music AAC audio file")),
        ("Size", ("integer", str(4_000_000 + i))),
        ("Total Time", ("integer", str(200_000 + i))),
        ("Disc Number", ("integer", "1")),
        ("Track Number", ("integer", str(i % 4 + 1))),
        ("Year", ("integer", str(1990 + album))),
        ("Date Modified", ("date", "2023-03-03T12:01:00Z")),
        ("Date Added", ("date", "2023-03-01T12:01:00Z")),
        ("Play Count", ("integer", str(i * 3))),
        ("Compilation", ("true", "")),
        ("Persistent ID", ("string", f"{0xF2A74DE452E60000 + i:016X}")),
        ("Track Type", ("string", "File")),
        ("Location", ("string", f"file:///Users/me/Music/{i:04d}.m4a")),
    ]


def base_library(n: int) -> Lib:
    return Lib(tracks=[(1000 + 2 * i, base_track(i)) for i in range(n)])


def set_value(values: list[tuple[str, Value]], key: str, value: Value | None) -> None:
    for n, (k, _) in enumerate(values):
        if k == key:
            if value is None:
                del values[n]
            else:
                values[n] = (key, value)
            return
    if value is not None:
        values.insert(len(values) // 2, (key, value))


# -- the comparison


@dataclass
class Checker:
    path: Path
    reader: FastXmlReader
    # The whole library as the fast reader's reads describe it (a full read, then the changes).
    library: dict[str, Track] | None = None
    previous_full: LibraryRead | None = None
    fast_reads: int = 0

    def write(self, data: bytes) -> None:
        # Music.app saves to a temp file and renames it over the library.
        tmp = self.path.with_name(".saving")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)

    def check(self, *, expect_fast: bool | None = None) -> LibraryRead | None:
        """Read with both readers; they agree on the tracks, the counts and the events."""
        try:
            expected = read_library_xml(self.path)
        except LibraryReadError as err:
            with pytest.raises(LibraryReadError) as got:
                self.reader.read()
            assert str(got.value) == str(err)
            assert self.reader.last_mode == "full"
            # The reader keeps what it knew: its next read of the changes is from there.
            return None
        read = self.reader.read()
        if read.gone is None:
            assert_same(read, expected)
            library = dict(read.tracks)
            events = (
                None if self.library is None else diff_tracks(self.library.values(), read.tracks)
            )
        else:
            # Only the changes: the tracks they leave are the full reader's, as are the events.
            assert self.library is not None, "a read of the changes follows a read"
            assert (read.stat, read.source) == (expected.stat, expected.source)
            assert not expected.warnings and read.count() == len(expected.tracks)
            assert not set(read.gone) & set(read.tracks)
            assert set(read.gone) <= set(self.library)
            gone = set(read.gone)
            library = {k: t for k, t in self.library.items() if k not in gone}
            library.update(read.tracks)
            assert library == expected.tracks
            events = diff_changes(self.library, read.tracks, read.gone)
        if events is not None and self.previous_full is not None:
            assert by_track(events) == by_track(
                diff_tracks(self.previous_full.tracks.values(), expected.tracks)
            )
        self.library, self.previous_full = library, expected
        # Only the fast path reuses earlier work: every other read is a full one.
        assert read.full is (self.reader.last_mode == "full")
        assert (read.gone is not None) is (self.reader.last_mode == "fast")
        if expect_fast is not None:
            assert (self.reader.last_mode == "fast") is expect_fast, self.reader.last_reason
        self.fast_reads += self.reader.last_mode == "fast"
        return read


def by_track(events: list[TrackEvent]) -> list[TrackEvent]:
    """Events in a canonical order: a diff of the changes lists removals by key."""
    return sorted(events, key=lambda e: (e.type, e.persistent_id))


def assert_same(read: LibraryRead, expected: LibraryRead) -> None:
    assert list(read.tracks.items()) == list(expected.tracks.items())
    assert read.warnings == expected.warnings
    assert (read.without_persistent_id, read.duplicate_ids) == (
        expected.without_persistent_id,
        expected.duplicate_ids,
    )
    assert (read.stat, read.source) == (expected.stat, expected.source)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="musicd-fx-") as d:
        yield Path(d)


def checker_for(workdir: Path, data: bytes, **reader_args: object) -> Checker:
    path = workdir / "Library.xml"
    path.write_bytes(data)
    checker = Checker(path, FastXmlReader(path, **reader_args))  # type: ignore[arg-type]
    return checker


# -- random edits


TEXT = st.lists(
    st.one_of(
        st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]),
        st.sampled_from(["&", "<", ">", "]]>", "\n", "\r\n", " ", "\u00a0", "e\u0301"]),
    ),
    max_size=12,
).map("".join)
TEXT_KEYS = ("Name", "Artist", "Album Artist", "Album", "Genre", "Kind")
INT_KEYS = ("Year", "Track Number", "Disc Number", "Play Count", "Size", "Total Time")
EDITS = (
    "rename",
    "set_int",
    "drop_key",
    "add",
    "remove",
    "move",
    "renumber",
    "date",
    "crlf",
    "odd_string",
    "comment_in_track",
    "nested_value",
    "pid_case",
    "pid_missing",
    "pid_duplicate",
    "bad_integer",
    "truncate",
    "entities",
    "header_comment",
)


def apply_edit(lib: Lib, edit: str, data: st.DataObject) -> tuple[bool, bool]:
    """Apply `edit`; return (this version reads fast, the next one can too)."""
    lib.truncate_at = None
    if not lib.tracks and edit not in ("add", "date", "crlf"):
        edit = "add"
    pick = data.draw(st.integers(0, max(len(lib.tracks) - 1, 0)))
    fast, fast_next = True, True
    if edit == "rename":
        key = data.draw(st.sampled_from(TEXT_KEYS))
        style = data.draw(st.sampled_from(["ref", "named"]))
        set_value(lib.tracks[pick][1], key, ("string", escape(data.draw(TEXT), style)))
    elif edit == "set_int":
        key = data.draw(st.sampled_from(INT_KEYS))
        number = data.draw(st.integers(-(2**40), 2**40))
        text = hex(number) if number > 0 and data.draw(st.booleans()) else str(number)
        set_value(lib.tracks[pick][1], key, ("integer", text))
    elif edit == "drop_key":
        key = data.draw(st.sampled_from([*TEXT_KEYS, *INT_KEYS, "Compilation", "Location"]))
        set_value(lib.tracks[pick][1], key, None)
    elif edit == "add":
        i = data.draw(st.integers(0, 10_000))
        at = data.draw(st.integers(0, len(lib.tracks)))
        lib.tracks.insert(at, (20_000 + i, base_track(i)))
    elif edit == "remove":
        del lib.tracks[pick]
    elif edit == "move":
        moved = lib.tracks.pop(pick)
        lib.tracks.insert(data.draw(st.integers(0, len(lib.tracks))), moved)
    elif edit == "renumber":
        lib.tracks = [(tid + 1, values) for tid, values in lib.tracks]
    elif edit == "date":
        lib.date = f"2026-02-{data.draw(st.integers(10, 28))}T00:00:00Z"
    elif edit == "crlf":
        lib.crlf = not lib.crlf
    elif edit == "odd_string":
        # CDATA keeps the fast path off (a `</dict>` could hide in it); character references
        # and named entities do not.
        style = data.draw(st.sampled_from(["ref", "named", "cdata"]))
        set_value(lib.tracks[pick][1], "Name", ("string", escape(data.draw(TEXT), style)))
    elif edit == "comment_in_track":
        lib.tracks[pick][1].append(("Comments", ("string", "x<!-- a comment -->y")))
    elif edit == "nested_value":
        nested = "<key>a</key><array><string>b</string></array>"
        lib.tracks[pick][1].append(("Nested", ("dict", nested)))
    elif edit == "pid_case":
        values = lib.tracks[pick][1]
        for key, (name, inner) in values:
            if key == "Persistent ID":
                set_value(values, key, (name, inner.lower()))
                break
    elif edit == "pid_missing":
        set_value(lib.tracks[pick][1], "Persistent ID", None)
    elif edit == "pid_duplicate":
        other = data.draw(st.integers(0, len(lib.tracks) - 1))
        pid = dict(lib.tracks[other][1]).get("Persistent ID", ("string", "0"))
        set_value(lib.tracks[pick][1], "Persistent ID", pid)
    elif edit == "bad_integer":
        set_value(lib.tracks[pick][1], "Year", ("integer", "19x9"))
    elif edit == "truncate":
        lib.truncate_at = data.draw(st.floats(0.0, 0.999))
        fast = fast_next = False
    elif edit == "entities":
        lib.doctype = ENTITIES
    elif edit == "header_comment":
        lib.header_comment = data.draw(st.sampled_from(["", "saved", TRICKY_COMMENT]))
    return fast, fast_next


def odd(lib: Lib) -> bool:
    """Whether this version must be read in full (by design, not by accident)."""
    if lib.doctype == ENTITIES or lib.truncate_at is not None:
        return True
    # Tracks without a Persistent ID of 16 hex digits, or with a repeated one.
    pids = [dict(values).get("Persistent ID", ("", ""))[1].upper() for _, values in lib.tracks]
    if len(set(pids)) < len(pids) or not all(re.fullmatch("[0-9A-F]{16}", p) for p in pids):
        return True
    if lib.header_comment == TRICKY_COMMENT:
        return True
    for _, values in lib.tracks:
        for key, (name, inner) in values:
            if name == "dict" or "CDATA" in inner or "<!--" in inner:
                return True
            if key == "Year" and inner == "19x9":
                return True
    return False


RANDOM_EDITS = settings(
    max_examples=int(os.environ.get("FAST_XML_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@RANDOM_EDITS
@given(data=st.data(), size=st.integers(1, 9))
def test_random_edits_read_like_the_full_reader(
    workdir: Path, data: st.DataObject, size: int
) -> None:
    edit_and_compare(workdir, data, size)


# Chunks smaller than an entry, about one, and holding a few: entries, runs, the header and
# the end of the file all straddle the reads.
@RANDOM_EDITS
@given(data=st.data(), size=st.integers(1, 9), chunk_size=st.sampled_from([64, 100, 1000, 4096]))
def test_random_edits_read_like_the_full_reader_in_small_chunks(
    workdir: Path, data: st.DataObject, size: int, chunk_size: int
) -> None:
    edit_and_compare(workdir, data, size, chunk_size=chunk_size)


def edit_and_compare(workdir: Path, data: st.DataObject, size: int, **reader_args: object) -> None:
    lib = base_library(size)
    checker = checker_for(workdir, lib.render(), **reader_args)
    checker.check(expect_fast=False)  # the first read is a full one
    # Fingerprints exist after a read of a version the fast path understands; a version that
    # fails to read leaves them as they were.
    known = True
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        apply_edit(lib, data.draw(st.sampled_from(EDITS)), data)
        checker.write(lib.render())
        now_odd = odd(lib)
        read = checker.check(expect_fast=known and not now_odd)
        if read is not None:
            known = not now_odd


# -- targeted cases


def test_album_rename_reads_fast_as_the_renamed_tracks_alone(workdir: Path) -> None:
    lib = base_library(3 * RUN_ENTRIES + 7)
    checker = checker_for(workdir, lib.render())
    checker.check(expect_fast=False)
    for n, (_, values) in enumerate(lib.tracks):
        if n // 4 == 30:
            set_value(values, "Album", ("string", "Renamed &#38; Remastered"))
    lib.date = "2026-03-01T00:00:00Z"
    checker.write(lib.render())
    after = checker.check(expect_fast=True)
    assert after is not None and after.gone == []
    assert checker.reader.last_new_entries == 4
    assert [t.album for t in after.tracks.values()] == ["Renamed & Remastered"] * 4
    assert after.count() == 3 * RUN_ENTRIES + 7


def test_runs_survive_moves_removals_and_insertions(workdir: Path) -> None:
    lib = base_library(5 * RUN_ENTRIES)
    checker = checker_for(workdir, lib.render())
    checker.check(expect_fast=False)
    # A whole run's first entry goes, a block moves to the front, new tracks land in the middle.
    del lib.tracks[RUN_ENTRIES]
    block = lib.tracks[3 * RUN_ENTRIES : 3 * RUN_ENTRIES + 40]
    del lib.tracks[3 * RUN_ENTRIES : 3 * RUN_ENTRIES + 40]
    lib.tracks[:0] = block
    lib.tracks[700:700] = [(90_000 + i, base_track(9000 + i)) for i in range(5)]
    checker.write(lib.render())
    checker.check(expect_fast=True)
    assert checker.reader.last_new_entries == 5
    checker.write(lib.render())  # same bytes again: nothing new, still fast
    checker.check(expect_fast=True)
    assert checker.reader.last_new_entries == 0


def test_many_changes_fall_back_to_a_full_read(workdir: Path) -> None:
    lib = base_library(200)
    checker = checker_for(workdir, lib.render())
    checker.check()
    lib.tracks = [(tid + 100_000, values) for tid, values in lib.tracks]
    checker.write(lib.render())
    checker.check(expect_fast=False)
    assert "tracks changed" in checker.reader.last_reason
    lib.date = "2026-04-01T00:00:00Z"
    checker.write(lib.render())
    checker.check(expect_fast=True)


def test_entity_declarations_always_go_to_the_full_reader(workdir: Path) -> None:
    lib = base_library(5)
    checker = checker_for(workdir, lib.render())
    checker.check()
    lib.doctype = ENTITIES
    checker.write(lib.render())
    with pytest.raises(LibraryReadError, match="entities"):
        checker.reader.read()
    assert checker.reader.last_mode == "full"


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda d: d[: d.index(b"</dict>", len(d) // 3)], id="inside-tracks"),
        pytest.param(lambda d: d[: d.index(b"<key>Playlists</key>")], id="after-tracks"),
        pytest.param(lambda d: d[: d.rindex(b"</plist>")], id="no-plist-end"),
        pytest.param(lambda d: d[:-3], id="last-bytes"),
        pytest.param(lambda d: d + b"<dict>", id="junk-after"),
    ],
)
def test_truncated_or_extended_files_are_rejected(workdir: Path, cut: object) -> None:
    data = base_library(20).render()
    checker = checker_for(workdir, data)
    checker.check()
    checker.write(cut(data))  # type: ignore[operator]
    assert checker.check() is None


def test_second_tracks_dict_after_the_first_is_rejected(workdir: Path) -> None:
    data = base_library(3).render()
    checker = checker_for(workdir, data)
    checker.check()
    extra = b"<key>Tracks</key><dict></dict>\n\t<key>Playlists</key>"
    checker.write(data.replace(b"<key>Playlists</key>", extra, 1))
    assert checker.check() is None


def test_missing_file_raises_like_the_full_reader(workdir: Path) -> None:
    checker = checker_for(workdir, base_library(2).render())
    checker.check()
    checker.path.unlink()
    assert checker.check() is None


def test_periodic_full_read(workdir: Path) -> None:
    now = [0.0]
    checker = checker_for(
        workdir, base_library(4).render(), full_interval_seconds=10.0, clock=lambda: now[0]
    )
    checker.check(expect_fast=False)
    checker.check(expect_fast=True)
    now[0] = 11.0
    checker.check(expect_fast=False)
    assert checker.reader.last_reason == "periodic full read"
    checker.check(expect_fast=True)


def test_a_read_is_full_unless_it_took_the_fast_path(workdir: Path) -> None:
    now = [0.0]
    checker = checker_for(
        workdir, base_library(4).render(), full_interval_seconds=10.0, clock=lambda: now[0]
    )
    reads = [checker.check()]
    reads.append(checker.check(expect_fast=True))
    now[0] = 11.0
    reads.append(checker.check(expect_fast=False))
    assert [read.full for read in reads if read is not None] == [True, False, True]


def test_a_periodic_full_read_checks_what_the_fast_path_kept(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = base_library(6)
    now = [0.0]
    checker = checker_for(workdir, lib.render(), full_interval_seconds=10.0, clock=lambda: now[0])
    checker.check(expect_fast=False)
    set_value(lib.tracks[2][1], "Album", ("string", "Other"))
    checker.write(lib.render())
    now[0] = 11.0
    with capture_logs() as logs:
        checker.check(expect_fast=False)
    assert checker.reader.last_reason == "periodic full read"
    assert not any(e["event"] == "fast_read_mismatch" for e in logs)
    # What the fast path keeps goes wrong from now on (a track's id is forgotten).
    edited = fast_xml._edited

    def forgetting(*args: Any) -> Any:
        fps, pids = edited(*args)
        return fps, array("Q", [0] * len(pids))

    monkeypatch.setattr(fast_xml, "_edited", forgetting)
    set_value(lib.tracks[3][1], "Album", ("string", "Other"))
    checker.write(lib.render())
    now[0] = 22.0
    with capture_logs() as logs:
        checker.reader.read()
    assert any(e["event"] == "fast_read_mismatch" for e in logs)


def test_a_bad_version_keeps_the_fingerprints(workdir: Path) -> None:
    lib = base_library(10)
    checker = checker_for(workdir, lib.render())
    checker.check()
    set_value(lib.tracks[2][1], "Year", ("integer", "19x9"))
    checker.write(lib.render())
    assert checker.check() is None
    set_value(lib.tracks[2][1], "Year", ("integer", "1999"))
    checker.write(lib.render())
    checker.check(expect_fast=True)


def test_keyed_fingerprints_give_the_same_reads(workdir: Path) -> None:
    lib = base_library(30)
    checker = checker_for(workdir, lib.render(), fingerprint=keyed_fingerprint())
    checker.check()
    set_value(lib.tracks[3][1], "Album", ("string", "Other"))
    checker.write(lib.render())
    checker.check(expect_fast=True)


def test_without_persistent_ids_and_duplicates(workdir: Path) -> None:
    lib = base_library(12)
    for n in (2, 5, 6):
        set_value(lib.tracks[n][1], "Persistent ID", None)
        lib.tracks[n][1][:] = [(k, v) for k, v in lib.tracks[n][1] if k != "Location"]
        set_value(lib.tracks[n][1], "Name", ("string", "Same"))
        set_value(lib.tracks[n][1], "Total Time", ("integer", "1"))
        set_value(lib.tracks[n][1], "Track Number", ("integer", "1"))
    set_value(lib.tracks[9][1], "Persistent ID", dict(lib.tracks[1][1])["Persistent ID"])
    checker = checker_for(workdir, lib.render())
    first = checker.check()
    assert first is not None and first.without_persistent_id == 3 and first.duplicate_ids == 1
    lib.tracks.insert(0, lib.tracks.pop(6))  # the "-2", "-3" suffixes follow file order
    checker.write(lib.render())
    # Such a library is read in full each time, with the full reader's identity rules.
    checker.check(expect_fast=False)


# -- reading in chunks

CHUNK_SIZES = [64, 257, 4096]


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_entries_and_runs_across_chunk_boundaries(workdir: Path, chunk_size: int) -> None:
    lib = base_library(5 * RUN_ENTRIES)
    checker = checker_for(workdir, lib.render(), chunk_size=chunk_size)
    checker.check(expect_fast=False)
    for n, (_, values) in enumerate(lib.tracks):
        if n // 4 == 100:
            set_value(values, "Album", ("string", "Renamed"))
    checker.write(lib.render())
    checker.check(expect_fast=True)
    assert checker.reader.last_new_entries == 4
    # Runs found again at other positions, and new entries between them.
    del lib.tracks[RUN_ENTRIES]
    block = lib.tracks[3 * RUN_ENTRIES : 3 * RUN_ENTRIES + 40]
    del lib.tracks[3 * RUN_ENTRIES : 3 * RUN_ENTRIES + 40]
    lib.tracks[:0] = block
    lib.tracks[700:700] = [(90_000 + i, base_track(9000 + i)) for i in range(5)]
    lib.date = "2026-03-01T00:00:00Z"
    checker.write(lib.render())
    checker.check(expect_fast=True)
    assert checker.reader.last_new_entries == 5
    checker.write(lib.render() + b"\n")  # the end of the file changes alone
    checker.check(expect_fast=True)
    assert checker.reader.last_new_entries == 0


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_a_file_that_ends_exactly_at_a_chunk_boundary(workdir: Path, chunk_size: int) -> None:
    lib = base_library(40)

    def padded() -> bytes:
        data = lib.render()
        return data + b"\n" * (-len(data) % chunk_size)  # white space after the plist

    checker = checker_for(workdir, padded(), chunk_size=chunk_size)
    checker.check(expect_fast=False)
    set_value(lib.tracks[7][1], "Name", ("string", "Renamed"))
    data = padded()
    assert len(data) % chunk_size == 0
    checker.write(data)
    checker.check(expect_fast=True)
    assert checker.reader.last_new_entries == 1
    checker.write(data[:-chunk_size])  # cut at a boundary: the end of the plist goes with it
    assert checker.check() is None


def test_a_file_truncated_anywhere_is_rejected_whatever_the_chunk_size(workdir: Path) -> None:
    data = base_library(6).render()
    checker = checker_for(workdir, data, chunk_size=64)
    checker.check()
    start = data.index(b"<key>Tracks</key>")
    cuts = sorted({*range(start, len(data) - 1, 61), *range(64, len(data) - 1, 64)})
    for cut in cuts:
        checker.write(data[:cut])
        assert checker.check() is None, cut
    checker.write(data)
    checker.check(expect_fast=True)


def test_a_header_past_the_first_mebibyte_is_read_in_full(workdir: Path) -> None:
    # Finding the Tracks dict that far would mean holding whatever comes before it.
    lib = base_library(3)
    lib.header_comment = "saved " * (200 << 10)
    checker = checker_for(workdir, lib.render(), chunk_size=4096)
    with capture_logs() as logs:
        checker.check(expect_fast=False)
    assert [e["reason"] for e in logs if e["event"] == "fast_read_unavailable"] == [
        "no Tracks dict found"
    ]
    checker.check(expect_fast=False)


def test_a_read_never_holds_the_file_whole(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracks = 10_000
    data = generate_library(tracks)
    path = workdir / "Library.xml"
    path.write_bytes(data)
    reader = FastXmlReader(path)

    # The fingerprints rebuilt after a full read are measured from the end of the full parse:
    # its tracks are the read's own, handed to the caller (and tracing would make it slow).
    def traced_after(*args: Any, **kwargs: Any) -> LibraryRead:
        result = read_library_xml(*args, **kwargs)
        tracemalloc.start()
        return result

    monkeypatch.setattr(fast_xml, "read_library_xml", traced_after)
    try:
        reader.read()
        rebuild = tracemalloc.get_traced_memory()[1]
        edited, _ = rename_album(data, 10, "Renamed")
        Checker(path, reader).write(edited)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        read = reader.read()
        fast = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert reader.last_mode == "fast" and read.tracks
    # The window (two chunks), 2 MiB for the rest, and arrays of a few words a track: a
    # fraction of the file, which a read of twice the tracks would double and this would not.
    bound = 2 * CHUNK_SIZE + (2 << 20) + 64 * tracks
    assert fast < bound, f"{fast / 2**20:.1f} MiB"
    assert rebuild < bound, f"{rebuild / 2**20:.1f} MiB"
    assert bound < len(data) / 3


def test_fingerprints_are_rebuilt_only_from_the_version_fully_read(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = base_library(8)
    checker = checker_for(workdir, lib.render())
    set_value(lib.tracks[3][1], "Name", ("string", "Saved during the read"))

    def saved_right_after(*args: Any, **kwargs: Any) -> LibraryRead:
        result = read_library_xml(*args, **kwargs)
        checker.write(lib.render())
        return result

    monkeypatch.setattr(fast_xml, "read_library_xml", saved_right_after)
    with capture_logs() as logs:
        checker.reader.read()
    assert [e["reason"] for e in logs if e["event"] == "fast_read_unavailable"] == [
        "the file changed after it was read"
    ]
    monkeypatch.undo()
    checker.check(expect_fast=False)  # nothing was known of either version
    checker.check(expect_fast=True)


# -- real libraries


def edit_real(data: bytes, how: str) -> bytes:
    if how == "rename-album":
        return re.sub(rb"(<key>Album</key><string>)([^<]*)", rb"\1Renamed \2", data, count=3)
    if how == "crlf":
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if how == "drop-first-track":
        start = data.index(b"<dict>", data.index(b"<key>Tracks</key>")) + len(b"<dict>")
        first = data.find(b"</dict>", start)
        return data if first < 0 else data[:start] + data[first + len(b"</dict>") :]
    if how == "swap-two-tracks":
        start = data.index(b"<dict>", data.index(b"<key>Tracks</key>")) + len(b"<dict>")
        a = data.find(b"</dict>", start) + len(b"</dict>")
        b = data.find(b"</dict>", a) + len(b"</dict>")
        if a < len(b"</dict>") or b < len(b"</dict>"):
            return data
        return data[:start] + data[a:b] + data[start:a] + data[b:]
    raise AssertionError(how)


@needs_real_files
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_libraries_read_like_the_full_reader(workdir: Path, path: Path) -> None:
    original = path.read_bytes()
    checker = checker_for(workdir, original)
    checker.check(expect_fast=False)
    for how in ("rename-album", "swap-two-tracks", "drop-first-track", "crlf"):
        checker.write(edit_real(original, how))
        checker.check()
    checker.write(original)
    checker.check()


@needs_real_files
def test_real_snapshot_pair_reads_like_the_full_reader(workdir: Path) -> None:
    older, newer = (
        REAL_LIBRARIES / "jettairlines__itunesvis__data_iTunes_Music_Library.xml",
        REAL_LIBRARIES / "jettairlines__itunesvis__iTunes_Music_Library.xml",
    )
    if not (older.exists() and newer.exists()):
        pytest.skip("the jettairlines pair is absent")
    checker = checker_for(workdir, older.read_bytes())
    checker.check()
    checker.write(newer.read_bytes())  # every Track ID renumbered: a full read
    checker.check(expect_fast=False)
    checker.write(edit_real(newer.read_bytes(), "rename-album"))
    checker.check(expect_fast=True)


@pytest.mark.slow
def test_what_a_reader_keeps_between_reads_costs_bytes_per_track_not_tracks(
    workdir: Path,
) -> None:
    # Fingerprints and Persistent IDs in arrays: no Track, no int or str object per track.
    lib = base_library(4000)
    path = workdir / "Library.xml"
    path.write_bytes(lib.render())
    reader = FastXmlReader(path)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        read = reader.read()
        assert read.count() == 4000
        del read
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert reader.last_mode == "full"
    assert kept / 4000 < 64, f"{kept / 4000:.0f} bytes a track"
