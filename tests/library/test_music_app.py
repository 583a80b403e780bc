"""The Music.app reader: its JXA script under Node.js, and the reader against a fake osascript."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import unicodedata
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.app import make_reader
from daemon.config import Config, LibraryConfig, config_from_mapping
from daemon.errors import LibraryChangedDuringRead, LibraryReadError
from daemon.library import FileStat, library_stat, music_app
from daemon.library.music_app import (
    MAX_FETCH,
    PROBE_FIELDS,
    SCRIPT_FORMAT,
    MusicAppReader,
)
from daemon.models import TRACK_FIELDS, Track
from tests.fakes import FakeOsascript
from tests.fakes import fake_osascript as fake_module
from tests.library.test_readers import NoTracks
from tests.support import wait_for

SCRIPT = Path(str(resources.files("daemon") / "data" / "music_library.js"))
JXA = Path(__file__).resolve().parent / "jxa"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH")

NFD_BJORK = unicodedata.normalize("NFD", "Björk")
ODD = 'Say "hi" \\ back\nnext line\ttab \U0001f3b5 \u2028 caf\u00e9 ' + NFD_BJORK

TRACKS = [
    Track(
        "0123456789ABCDEF",
        name="So What",
        artist="Miles Davis",
        album_artist="Miles Davis",
        album="Kind of Blue",
        genre="Jazz",
        year=1959,
        disc_number=1,
        track_number=1,
        date_added="2020-05-16T11:33:56Z",
        date_modified="2021-01-02T03:04:05Z",
        kind="MPEG audio file",
        track_type="File",
    ),
    Track(
        "FEDCBA9876543210",
        name=ODD,
        artist=NFD_BJORK,
        album="Homogenic",
        compilation=True,
        date_added="1969-07-20T20:17:40Z",
        kind="Apple Music AAC audio file",
        track_type="Remote",
        disabled=True,
    ),
    Track("00000000000000AA"),
]


def pid(n: int) -> str:
    return f"{n:016X}"


# -- the JXA script under Node.js ------------------------------------------------------------


def music_track(track: Track, **overrides: Any) -> dict[str, Any]:
    """How Music.app's dictionary describes `track` (missing values as Music.app gives them)."""
    classes = {"File": "fileTrack", "URL": "URLTrack", "Remote": "sharedTrack", None: "track"}
    spec: dict[str, Any] = {
        "persistentID": track.persistent_id,
        "name": track.name or "",
        "artist": track.artist or "",
        "albumArtist": track.album_artist or "",
        "album": track.album or "",
        "genre": track.genre or "",
        "year": track.year or 0,
        "compilation": track.compilation,
        "discNumber": track.disc_number or 0,
        "trackNumber": track.track_number or 0,
        "dateAdded": track.date_added,
        "modificationDate": track.date_modified,
        "kind": track.kind or "",
        "class": classes[track.track_type],
        "enabled": not track.disabled,
    }
    spec.update(overrides)
    return spec


def run_jxa(
    tmp_path: Path, spec: dict[str, Any], *argv: str
) -> tuple[dict[str, Any], list[dict[str, Any]], bytes]:
    """Run the shipped script under Node with a fake Music.app: (answer, events, stdout)."""
    assert NODE is not None
    spec_file = tmp_path / "music.json"
    events_file = tmp_path / "events.json"
    # json, not orjson: only json can write a lone surrogate (as a \ud800 escape).
    spec_file.write_text(json.dumps(spec), encoding="ascii")
    proc = subprocess.run(
        [NODE, str(JXA / "run_jxa.js"), str(SCRIPT), str(spec_file), str(events_file), "--", *argv],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    recorded = orjson.loads(events_file.read_bytes())
    assert recorded["launched"] is False
    answer: dict[str, Any] = orjson.loads(proc.stdout)
    return answer, recorded["events"], proc.stdout


def apple_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if "running" not in e]


@needs_node
def test_script_maps_music_values_like_the_xml_reader(tmp_path: Path) -> None:
    spec = {"tracks": [music_track(t) for t in TRACKS]}
    answer, _, stdout = run_jxa(tmp_path, spec)
    assert answer["format"] == SCRIPT_FORMAT
    assert answer["fields"] == list(TRACK_FIELDS)
    assert answer["count"] == 3
    assert answer["consistent"] is True
    assert answer["warnings"] == []
    assert [Track(*row) for row in answer["tracks"]] == [
        replace(TRACKS[0]),
        replace(TRACKS[1]),
        # Music.app's "", 0 and "track" class are all missing values.
        Track("00000000000000AA"),
    ]
    # One line of ASCII JSON: survives any locale osascript prints in; NFD stays NFD.
    assert stdout.endswith(b"\n") and stdout.count(b"\n") == 1
    assert stdout.isascii()
    assert answer["tracks"][1][1] == ODD


@needs_node
def test_script_normalises_odd_values(tmp_path: Path) -> None:
    odd = music_track(
        TRACKS[0],
        persistentID="abcdef0123456789",
        name="lone \ud800 surrogate",
        artist="",
        year=0,
        discNumber=0,
        trackNumber=7,
        dateAdded="2020-05-16T11:33:56.789Z",
        modificationDate={"invalid": True},
        kind=None,
        compilation=None,
        enabled=None,
        **{"class": "URLTrack"},
    )
    answer, _, _ = run_jxa(tmp_path, {"tracks": [odd]})
    track = Track(*answer["tracks"][0])
    assert track.persistent_id == "ABCDEF0123456789"
    assert track.name == "lone \ufffd surrogate"
    assert track.artist is None
    assert (track.year, track.disc_number, track.track_number) == (None, None, 7)
    assert track.date_added == "2020-05-16T11:33:56Z"
    assert track.date_modified is None
    assert track.kind is None
    assert track.compilation is False
    assert track.disabled is False
    assert track.track_type == "URL"


@needs_node
def test_script_sends_one_event_per_field_whatever_the_library_size(tmp_path: Path) -> None:
    small = [music_track(Track(pid(n), name=f"t{n}")) for n in range(3)]
    large = [music_track(Track(pid(n), name=f"t{n}")) for n in range(300)]
    _, events_small, _ = run_jxa(tmp_path, {"tracks": small})
    answer_large, events_large, _ = run_jxa(tmp_path, {"tracks": large})
    assert len(answer_large["tracks"]) == 300
    assert events_small == events_large
    gets = [e["get"] for e in events_large if "get" in e]
    # Every kept field Music.app has once (track_id is the XML's alone), the persistent ids
    # twice (first and last, to catch a change mid-read).
    assert len(gets) == len(TRACK_FIELDS)
    assert gets[:2] == ["persistentID", "modificationDate"] and gets[-1] == "persistentID"
    assert all(e.get("of", "tracks") == "tracks" for e in events_large)
    assert sum("count" in e for e in events_large) == 1


@needs_node
def test_script_probe_fetches_only_what_spots_a_change(tmp_path: Path) -> None:
    spec = {"tracks": [music_track(t) for t in TRACKS]}
    answer, events, _ = run_jxa(tmp_path, spec, "probe")
    assert answer["fields"] == list(PROBE_FIELDS)
    index = [TRACK_FIELDS.index(f) for f in PROBE_FIELDS]
    assert answer["tracks"] == [[t.to_row()[i] for i in index] for t in TRACKS]
    assert len([e for e in events if "get" in e]) == len(PROBE_FIELDS) + 1


@needs_node
def test_script_fetch_uses_one_filtered_specifier(tmp_path: Path) -> None:
    tracks = [music_track(Track(pid(n), name=f"t{n}")) for n in range(50)]
    wanted = [pid(3), pid(40), pid(7)]
    answer, events, _ = run_jxa(tmp_path, {"tracks": tracks}, "fetch", *wanted)
    # Library order, not request order.
    assert [row[0] for row in answer["tracks"]] == [pid(3), pid(7), pid(40)]
    gets = [e for e in events if "get" in e]
    assert len(gets) == len(TRACK_FIELDS)  # track_id has no property: the ids take its place
    assert all(e["of"] == "tracks.whose" for e in gets)
    _, one_event_list, _ = run_jxa(tmp_path, {"tracks": tracks}, "fetch", pid(1))
    assert len(one_event_list) == len(events)


@needs_node
def test_script_never_touches_music_when_it_is_not_running(tmp_path: Path) -> None:
    answer, events, _ = run_jxa(tmp_path, {"running": False, "tracks": []})
    assert answer == {"format": SCRIPT_FORMAT, "running": False}
    assert apple_events(events) == []


@needs_node
def test_script_answers_apple_event_errors_with_their_number(tmp_path: Path) -> None:
    denied = {"number": -1743, "message": "Not authorized to send Apple events to Music."}
    answer, _, _ = run_jxa(tmp_path, {"tracks": [], "fail": {"count": denied}})
    assert answer == {"format": SCRIPT_FORMAT, "running": True, "error": denied}
    answer, _, _ = run_jxa(tmp_path, {"tracks": [], "fail": {"name": denied}})
    assert answer["error"] == denied


@needs_node
def test_script_goes_on_without_track_classes(tmp_path: Path) -> None:
    spec = {"tracks": [music_track(t) for t in TRACKS], "classUnsupported": True}
    answer, _, _ = run_jxa(tmp_path, spec)
    assert [row[TRACK_FIELDS.index("track_type")] for row in answer["tracks"]] == [None] * 3
    assert answer["tracks"][0][1] == "So What"
    assert answer["warnings"] == [
        "Music.app did not list the track classes; track_type is left empty"
    ]
    fatal = {"number": -1743, "message": "Not authorized"}
    answer, _, _ = run_jxa(tmp_path, {"tracks": [], "fail": {"class": fatal}})
    assert answer["error"] == fatal


@needs_node
def test_script_says_inconsistent_when_tracks_change_mid_read(tmp_path: Path) -> None:
    before = [music_track(Track(pid(n), name=f"t{n}")) for n in range(3)]
    after = [music_track(Track(pid(9), name="new")), *before]
    spec = {"tracks": before, "changeAfterEvents": 5, "tracksAfterChange": after}
    answer, _, _ = run_jxa(tmp_path, spec)
    assert answer["consistent"] is False
    assert answer["tracks"] == []


@needs_node
def test_script_reads_an_empty_library_and_rejects_unknown_modes(tmp_path: Path) -> None:
    answer, _, _ = run_jxa(tmp_path, {"tracks": []})
    assert (answer["count"], answer["tracks"], answer["consistent"]) == (0, [], True)
    answer, _, _ = run_jxa(tmp_path, {"tracks": []}, "everything")
    assert answer["error"]["number"] is None
    assert "unknown mode" in answer["error"]["message"]


def test_fake_osascript_speaks_the_same_fields_as_the_reader() -> None:
    assert tuple(fake_module.TRACK_FIELDS) == TRACK_FIELDS
    assert tuple(fake_module.PROBE_FIELDS) == PROBE_FIELDS
    assert fake_module.FORMAT == SCRIPT_FORMAT
    script = SCRIPT.read_text(encoding="utf-8")
    assert f"var FORMAT = '{SCRIPT_FORMAT}';" in script


# -- the reader against a fake osascript -----------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOsascript:
    fake = FakeOsascript(tmp_path)
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    fake.serve(TRACKS)
    return fake


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "Music Library.musiclibrary"
    path.mkdir()
    (path / "Library.musicdb").write_bytes(b"hfma")
    return path


RESCAN = "/opt/bin/musicd rescan --config '/home/me/my config.toml'"


def reader(bundle: Path, **kwargs: Any) -> MusicAppReader:
    kwargs.setdefault("timeout_seconds", 20.0)
    kwargs.setdefault("full_scan_interval_seconds", 3600.0)
    kwargs.setdefault("rescan_command", RESCAN)
    return MusicAppReader(bundle, **kwargs)


def test_reads_every_track_in_library_order(fake: FakeOsascript, bundle: Path) -> None:
    read = reader(bundle).read()
    assert list(read.tracks.values()) == TRACKS
    assert list(read.tracks) == [t.persistent_id for t in TRACKS]
    assert read.source == "music-app"
    assert read.stat == library_stat(bundle)
    assert (read.without_persistent_id, read.duplicate_ids, read.warnings) == (0, 0, [])
    assert fake.calls() == [["full"]]


def test_the_stat_moves_when_library_musicdb_is_rewritten_in_place(bundle: Path) -> None:
    # Music.app rewrites Library.musicdb in place: the bundle directory's own mtime stays.
    before = library_stat(bundle)
    dir_mtime = FileStat.of(bundle).mtime_ns
    db = bundle / "Library.musicdb"
    os.utime(db, ns=(dir_mtime + 5_000_000_000, dir_mtime + 5_000_000_000))
    with db.open("r+b") as fh:
        fh.write(b"HFMA")
    os.utime(db, ns=(dir_mtime + 5_000_000_000, dir_mtime + 5_000_000_000))
    assert FileStat.of(bundle).mtime_ns == dir_mtime
    after = library_stat(bundle)
    assert after is not None and before is not None
    assert after != before and after.mtime_ns == dir_mtime + 5_000_000_000


def test_reader_is_built_from_the_config(fake: FakeOsascript, bundle: Path) -> None:
    config = config_from_mapping({"library": {"source": "music-app", "path": str(bundle)}})
    reader = make_reader(config, NoTracks(), rescan_command=RESCAN)
    assert isinstance(reader, MusicAppReader)
    read = reader.read()
    assert list(read.tracks.values()) == TRACKS


def test_missing_bundle_is_reported_without_asking_music(
    fake: FakeOsascript, tmp_path: Path
) -> None:
    with pytest.raises(LibraryReadError, match=r"bundle .* does not exist; set library\.path"):
        reader(tmp_path / "nowhere.musiclibrary").read()
    assert fake.calls() == []


def test_a_file_instead_of_the_bundle_is_reported(fake: FakeOsascript, tmp_path: Path) -> None:
    xml = tmp_path / "Library.xml"
    xml.write_bytes(b"<plist/>")
    with pytest.raises(LibraryReadError, match=r"is not a directory.*musiclibrary"):
        reader(xml).read()
    assert fake.calls() == []


def test_music_not_running_is_an_error(fake: FakeOsascript, bundle: Path) -> None:
    fake.serve([], running=False)
    with pytest.raises(LibraryReadError, match=r"Music\.app is not running.*never starts it"):
        reader(bundle).read()


DENIED_STDERR = (
    "music_library.js: execution error: Error: Not authorized to send Apple events to Music. "
    "(-1743)\n"
)


@pytest.mark.parametrize(
    "control",
    [
        {"behaviour": "stdout", "stderr": DENIED_STDERR, "exit": 1},
        {"library": {"error": {"number": -1743, "message": "Not authorized"}}},
    ],
    ids=["stderr", "answer"],
)
def test_denied_automation_names_the_settings_pane(
    fake: FakeOsascript, bundle: Path, control: dict[str, Any]
) -> None:
    fake.configure(**control)
    with pytest.raises(LibraryReadError) as info:
        reader(bundle).read()
    message = str(info.value)
    assert "-1743" in message
    assert "System Settings > Privacy & Security > Automation" in message
    assert message.endswith(f"then run '{RESCAN}'")  # as this process was invoked
    assert "\n" not in message


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        # A zombie nobody has reaped yet (PID 1 in a container may never) is dead too.
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_hung_osascript_is_killed_with_everything_it_started(
    fake: FakeOsascript, bundle: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    fake.configure(behaviour="hang", pidfile=str(pidfile))
    started = time.monotonic()
    # Long enough for the fake (a Python process) to start its grandchild on a busy machine.
    with pytest.raises(LibraryReadError, match=r"did not finish within 2 s"):
        reader(bundle, timeout_seconds=2.0).read()
    # The fake hangs for 300 s: returning within a minute proves the reader did not wait for
    # it, without a tight bound that a busy machine could miss.
    assert time.monotonic() - started < 60
    # The grandchild held osascript's stdout: the read returned, so it was killed too.
    grandchild = int(pidfile.read_text())
    wait_for(lambda: not _alive(grandchild), 5, what="the grandchild sleep to be killed")


def test_missing_osascript_says_it_needs_macos(
    fake: FakeOsascript, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(LibraryReadError, match=r'osascript was not found.*only on macOS.*"xml"'):
        reader(bundle).read()


def _row_with(**values: Any) -> list[Any]:
    row = TRACKS[0].to_row()
    for name, value in values.items():
        row[TRACK_FIELDS.index(name)] = value
    return row


GOOD = {
    "format": SCRIPT_FORMAT,
    "running": True,
    "mode": "full",
    "count": 1,
    "fields": list(TRACK_FIELDS),
    "consistent": True,
    "tracks": [TRACKS[0].to_row()],
    "warnings": [],
}


@pytest.mark.parametrize(
    ("stdout", "problem"),
    [
        (b"", "it printed nothing"),
        (b"\n", "it printed nothing"),
        (b"hello from osascript\n", "not JSON: 'hello from osascript'"),
        (b"[1, 2]", "not musicd's format"),
        (orjson.dumps({**GOOD, "format": "musicd/music-app/0"}), "not musicd's format"),
        (orjson.dumps({**GOOD, "running": "yes"}), "no 'running' flag"),
        (orjson.dumps({**GOOD, "fields": ["name"]}), "not the fields of a full read"),
        (orjson.dumps({**GOOD, "mode": "probe"}), "not the fields of a full read"),
        (orjson.dumps({**GOOD, "count": "1"}), "no track count"),
        (orjson.dumps({**GOOD, "tracks": {}}), "no track list"),
        (orjson.dumps({**GOOD, "warnings": [1]}), "malformed warnings"),
        (orjson.dumps({**GOOD, "tracks": [TRACKS[0].to_row()[:-1]]}), "track 0 is not a list"),
        (orjson.dumps({**GOOD, "tracks": [_row_with(year="1959")]}), "track 0 has year = '1959'"),
        (orjson.dumps({**GOOD, "tracks": [_row_with(year=True)]}), "track 0 has year"),
        (orjson.dumps({**GOOD, "tracks": [_row_with(disabled=None)]}), "track 0 has disabled"),
        (orjson.dumps({**GOOD, "tracks": [_row_with(name=["x"])]}), "track 0 has name"),
        (orjson.dumps({**GOOD, "error": "boom"}), "a malformed error"),
    ],
)
def test_unexpected_output_is_rejected(
    fake: FakeOsascript, bundle: Path, stdout: bytes, problem: str
) -> None:
    fake.configure(behaviour="stdout", stdout=stdout.decode())
    with pytest.raises(LibraryReadError) as info:
        reader(bundle).read()
    assert not isinstance(info.value, LibraryChangedDuringRead)
    assert f"unexpected answer from osascript ({problem}" in str(info.value)


@pytest.mark.parametrize(
    ("control", "message"),
    [
        (
            {"library": {"error": {"number": -600, "message": "Application isn't running."}}},
            "Music.app quit while the library was being read",
        ),
        (
            {"library": {"error": {"number": -1712, "message": "AppleEvent timed out."}}},
            r"did not answer in time \(error -1712\)",
        ),
        (
            {"library": {"error": {"number": -1728, "message": "Can't get playlist 1."}}},
            r"Music.app could not be read: Can't get playlist 1. \(error -1728\)",
        ),
        (
            {"behaviour": "stdout", "stderr": "x.js: execution error: Boom (-2700)\n", "exit": 1},
            r"Music.app could not be read: x.js: execution error: Boom \(-2700\)$",
        ),
        (
            {"behaviour": "stdout", "stderr": "osascript: weird failure\n", "exit": 3},
            r"osascript failed with exit status 3: osascript: weird failure$",
        ),
        ({"behaviour": "stdout", "exit": 2}, "exit status 2 and no message"),
    ],
)
def test_failures_have_one_line_messages(
    fake: FakeOsascript, bundle: Path, control: dict[str, Any], message: str
) -> None:
    fake.configure(**control)
    with pytest.raises(LibraryReadError, match=message) as info:
        reader(bundle).read()
    assert "\n" not in str(info.value)


def test_no_tracks_while_music_counts_some_is_an_error(fake: FakeOsascript, bundle: Path) -> None:
    fake.serve([], count=3)
    with pytest.raises(LibraryReadError, match="counts 3 tracks but listed none") as info:
        reader(bundle).read()
    assert not isinstance(info.value, LibraryChangedDuringRead)


@pytest.mark.parametrize("library", [{"consistent": False}, {"count": 4}])
def test_a_change_mid_read_asks_for_another_read(
    fake: FakeOsascript, bundle: Path, library: dict[str, Any]
) -> None:
    fake.serve(TRACKS, **library)
    with pytest.raises(LibraryChangedDuringRead):
        reader(bundle).read()


def test_an_empty_library_reads_as_empty(fake: FakeOsascript, bundle: Path) -> None:
    fake.serve([])
    assert reader(bundle).read().tracks == {}


def test_repeated_and_missing_ids_are_handled_like_the_xml_reader(
    fake: FakeOsascript, bundle: Path
) -> None:
    first = Track(pid(1), name="first")
    fake.serve([first, Track(pid(1), name="again"), Track(None, name="no id")])  # type: ignore[arg-type]
    read = reader(bundle).read()
    ids = list(read.tracks)
    assert ids[0] == pid(1) and read.tracks[pid(1)] == first
    assert ids[1].startswith("~") and read.tracks[ids[1]].name == "no id"
    assert (read.duplicate_ids, read.without_persistent_id) == (1, 1)
    assert len(read.warnings) == 2


# -- incremental reads -----------------------------------------------------------------------


def full_read(bundle: Path) -> list[Track]:
    return list(reader(bundle, incremental=False).read().tracks.values())


def test_an_unchanged_library_is_only_probed(fake: FakeOsascript, bundle: Path) -> None:
    r = reader(bundle)
    first = r.read()
    second = r.read()
    assert second.tracks == first.tracks
    assert list(second.tracks) == list(first.tracks)
    assert second.stat == library_stat(bundle)
    assert fake.modes() == ["full", "probe"]


@pytest.mark.parametrize("field", ["name", "artist", "album_artist", "album"])
def test_a_tag_edit_that_keeps_the_date_modified_is_still_fetched(
    fake: FakeOsascript, bundle: Path, field: str
) -> None:
    # Music.app's date modified is "the modification date of the content": a tag edit may
    # leave it alone, so the most edited tags are in the probe.
    r = reader(bundle)
    r.read()
    edited = replace(TRACKS[1], **{field: "Edited"})
    assert edited.date_modified == TRACKS[1].date_modified
    fake.serve([TRACKS[0], edited, TRACKS[2]])
    fake.clear_calls()
    read = r.read()
    assert fake.calls() == [["probe"], ["fetch", TRACKS[1].persistent_id]]
    assert getattr(read.tracks[TRACKS[1].persistent_id], field) == "Edited"


def test_each_phase_gets_the_whole_timeout(
    fake: FakeOsascript, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a probe that used most of the budget, the fetch or full read still gets all of it.
    seen: list[float] = []
    real = music_app.run_osascript

    def spy(script: Path, args: Any, timeout: float, configured: float, **kw: Any) -> bytes:
        seen.append(timeout)
        return real(script, args, timeout, configured, **kw)

    monkeypatch.setattr(music_app, "run_osascript", spy)
    r = reader(bundle, timeout_seconds=7.0)
    r.read()
    fake.serve([replace(TRACKS[0], name="Edited"), *TRACKS[1:]])
    r.read()
    assert seen == [7.0, 7.0, 7.0]


def test_only_new_and_changed_tracks_are_fetched(fake: FakeOsascript, bundle: Path) -> None:
    r = reader(bundle)
    r.read()
    edited = replace(TRACKS[0], album="Kind of Blue (Legacy)", date_modified="2024-01-01T00:00:00Z")
    added = Track(pid(7), name="New", date_added="2024-01-01T00:00:00Z")
    now = [edited, added, TRACKS[2]]  # TRACKS[1] was deleted
    fake.serve(now)
    fake.clear_calls()
    read = r.read()
    assert fake.calls() == [["probe"], ["fetch", TRACKS[0].persistent_id, pid(7)]]
    assert list(read.tracks.values()) == now == full_read(bundle)


@pytest.mark.parametrize(
    "change",
    [{"disabled": True}, {"kind": "Purchased AAC audio file"}, {"track_type": "Remote"}],
)
def test_changes_that_keep_the_date_modified_are_fetched(
    fake: FakeOsascript, bundle: Path, change: dict[str, Any]
) -> None:
    r = reader(bundle)
    r.read()
    now = [replace(TRACKS[0], **change), *TRACKS[1:]]
    fake.serve(now)
    fake.clear_calls()
    assert list(r.read().tracks.values()) == now
    assert fake.calls() == [["probe"], ["fetch", TRACKS[0].persistent_id]]


def test_many_changes_are_read_in_full(fake: FakeOsascript, bundle: Path) -> None:
    tracks = [Track(pid(n), name=f"t{n}") for n in range(MAX_FETCH + 1)]
    fake.serve(tracks)
    r = reader(bundle)
    r.read()
    now = [replace(t, date_modified="2024-01-01T00:00:00Z") for t in tracks]
    fake.serve(now)
    fake.clear_calls()
    read = r.read()
    assert list(read.tracks.values()) == now
    assert fake.modes() == ["probe", "full"]
    assert read.full is True


def test_a_full_read_is_forced_after_the_interval(fake: FakeOsascript, bundle: Path) -> None:
    r = reader(bundle, full_scan_interval_seconds=0.2)
    reads = [r.read(), r.read()]
    time.sleep(0.25)
    reads.append(r.read())
    assert fake.modes() == ["full", "probe", "full"]
    assert [read.full for read in reads] == [True, False, True]


def test_a_read_that_fetches_only_the_changed_tracks_is_not_full(
    fake: FakeOsascript, bundle: Path
) -> None:
    r = reader(bundle)
    assert r.read().full is True
    fake.serve([replace(TRACKS[0], date_modified="2024-01-01T00:00:00Z"), *TRACKS[1:]])
    assert r.read().full is False
    assert fake.modes() == ["full", "probe", "fetch"]


def test_a_track_gone_between_probe_and_fetch_means_read_again(
    fake: FakeOsascript, bundle: Path
) -> None:
    r = reader(bundle)
    r.read()
    added = Track(pid(7), name="New")
    fake.serve([*TRACKS, added], vanish=[pid(7)])
    with pytest.raises(LibraryChangedDuringRead):
        r.read()
    fake.serve(TRACKS)
    assert list(r.read().tracks.values()) == TRACKS
    assert fake.modes()[-1] == "probe"


def test_a_failed_read_keeps_the_previous_tracks_for_the_next(
    fake: FakeOsascript, bundle: Path
) -> None:
    r = reader(bundle)
    r.read()
    fake.serve([], running=False)
    with pytest.raises(LibraryReadError):
        r.read()
    edited = replace(TRACKS[2], name="Named", date_modified="2024-01-01T00:00:00Z")
    fake.serve([*TRACKS[:2], edited])
    assert list(r.read().tracks.values()) == [*TRACKS[:2], edited]
    assert fake.modes()[-2:] == ["probe", "fetch"]


def test_a_probe_with_repeated_ids_falls_back_to_a_full_read(
    fake: FakeOsascript, bundle: Path
) -> None:
    r = reader(bundle)
    r.read()
    fake.serve([*TRACKS, Track(TRACKS[0].persistent_id, name="twin")])
    read = r.read()
    assert read.duplicate_ids == 1
    assert fake.modes() == ["full", "probe", "full"]


def _mutate(rng: random.Random, tracks: list[Track], serial: list[int]) -> list[Track]:
    out = list(tracks)
    for _ in range(rng.randint(0, 4)):
        roll = rng.random()
        if roll < 0.25 and out:
            del out[rng.randrange(len(out))]
        elif roll < 0.5:
            serial[0] += 1
            out.insert(rng.randint(0, len(out)), Track(pid(1000 + serial[0]), name="new"))
        elif out:
            i = rng.randrange(len(out))
            serial[0] += 1
            stamp = f"2024-01-01T00:{serial[0] // 60 % 60:02d}:{serial[0] % 60:02d}Z"
            field = rng.choice(["album", "artist", "year", "disabled", "kind", "genre"])
            value: Any = {"year": 1990 + serial[0] % 30, "disabled": not out[i].disabled}.get(
                field, f"{field} {serial[0]}"
            )
            out[i] = replace(out[i], **{field: value})
            if field not in PROBE_FIELDS:
                # Editing tags moves the date modified; that is what the probe relies on.
                out[i] = replace(out[i], date_modified=stamp)
    return out


def test_incremental_reads_match_full_reads_through_random_edits(
    fake: FakeOsascript, bundle: Path
) -> None:
    rng = random.Random(5)
    serial = [0]
    tracks = [Track(pid(n), name=f"t{n}", album=f"a{n % 4}") for n in range(30)]
    incremental = reader(bundle)
    for _ in range(15):
        fake.serve(tracks)
        got = incremental.read()
        assert list(got.tracks.values()) == full_read(bundle) == tracks
        tracks = _mutate(rng, tracks, serial)
    assert "fetch" in fake.modes()


# -- the real script through the reader (osascript played by Node) ---------------------------


@needs_node
def test_real_script_full_and_incremental_through_the_reader(
    fake: FakeOsascript, bundle: Path
) -> None:
    fake.configure(behaviour="node", music={"tracks": [music_track(t) for t in TRACKS]})
    r = reader(bundle)
    assert list(r.read().tracks.values()) == TRACKS
    edited = replace(TRACKS[1], album="Homogenic (Live)", date_modified="2024-01-01T00:00:00Z")
    now = [TRACKS[0], edited, TRACKS[2], Track(pid(5), name="new", track_type="File")]
    fake.configure(behaviour="node", music={"tracks": [music_track(t) for t in now]})
    fake.clear_calls()
    assert list(r.read().tracks.values()) == now
    assert fake.calls() == [["probe"], ["fetch", TRACKS[1].persistent_id, pid(5)]]


@needs_node
def test_real_script_errors_through_the_reader(fake: FakeOsascript, bundle: Path) -> None:
    fake.configure(behaviour="node", music={"running": False})
    with pytest.raises(LibraryReadError, match=r"Music\.app is not running"):
        reader(bundle).read()
    denied = {"number": -1743, "message": "Not authorized to send Apple events to Music."}
    fake.configure(behaviour="node", music={"tracks": [], "fail": {"name": denied}})
    with pytest.raises(LibraryReadError, match="Privacy & Security > Automation"):
        reader(bundle).read()


# -- configuration -------------------------------------------------------------------------


def test_music_app_source_defaults_to_the_library_bundle() -> None:
    home = Path(os.path.expanduser("~"))
    cfg = config_from_mapping({"library": {"source": "music-app"}})
    assert cfg.library.path == home / "Music" / "Music" / "Music Library.musiclibrary"
    assert LibraryConfig(source="music-app").path == cfg.library.path
    assert Config().library.path.name == "Library.xml"
    explicit = config_from_mapping({"library": {"source": "music-app", "path": "/x/L.bundle"}})
    assert explicit.library.path == Path("/x/L.bundle")


def test_script_is_shipped_inside_the_package() -> None:
    assert SCRIPT.is_file()
    assert sys.modules["daemon"].__file__ is not None
    assert SCRIPT.parent == Path(sys.modules["daemon"].__file__).parent / "data"
