"""Bad library files against the real daemon: each one gets a clear log line and no events.

One daemon reads a series of damaged or hostile versions of its library file. After each, the
good file comes back. For each version the daemon must log why it was not used (or, for the
harmless ones, read it correctly), emit no track event, invalidate nothing and keep answering;
external entities must not make it open a file or a connection.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env, seed_answers, settle
from tests.support.common import wait_for
from tests.support.library import SynthLibrary, render_plist, write_library
from tests.support.runner import DaemonProc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

N_TRACKS = 300
TRACK_EVENTS = ("track_added", "track_modified", "track_removed", "cache_invalidated")


@dataclass
class Bad:
    name: str
    make: Callable[[bytes], bytes | None]  # None: the test puts something else in its place
    log: str  # the log event that must say what is wrong
    says: str  # ... and a word its reason or warning must contain


def truncated(k: int) -> Callable[[bytes], bytes]:
    return lambda good: good[: len(good) * k // 10]


def bad_utf8(seq: bytes) -> Callable[[bytes], bytes]:
    return lambda good: good.replace(b"Track 000150", b"Track " + seq + b"150", 1)


def with_doctype(subset: str, body: str = "") -> Callable[[bytes], bytes]:
    def make(good: bytes) -> bytes:
        head, _, rest = good.partition(b"<plist")
        head = head.split(b"<!DOCTYPE")[0]
        doc = head + f"<!DOCTYPE plist [\n{subset}\n]>\n".encode() + b"<plist" + rest
        if body:
            doc = doc.replace(b"Track 000150", body.encode(), 1)
        return doc

    return make


LAUGHS = "\n".join(
    ['<!ENTITY lol "lol">']
    + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    ]
)


def bad_files(canary: Path, fifo: Path, port: int) -> list[Bad]:
    cases = [Bad(f"truncated_{k}0pct", truncated(k), "library_unreadable", "") for k in range(10)]
    cases[0] = Bad("zero_bytes", truncated(0), "library_unreadable", "empty")
    cases += [
        Bad("invalid_utf8_ff", bad_utf8(b"\xff"), "library_unreadable", "UTF-8"),
        Bad("invalid_utf8_cont", bad_utf8(b"\xc3\x28"), "library_unreadable", "UTF-8"),
        Bad("invalid_utf8_overlong", bad_utf8(b"\xc0\xaf"), "library_unreadable", "UTF-8"),
        Bad("invalid_utf8_surrogate", bad_utf8(b"\xed\xa0\x80"), "library_unreadable", "UTF-8"),
        Bad("billion_laughs", with_doctype(LAUGHS, "&lol9;"), "library_unreadable", "entit"),
        Bad(
            "quadratic_blowup",
            with_doctype(f'<!ENTITY a "{"x" * 50_000}">', "&a;" * 5000),
            "library_unreadable",
            "entit",
        ),
        Bad(
            "external_file_entity",
            with_doctype(f'<!ENTITY xxe SYSTEM "file://{canary}">', "&xxe;"),
            "library_unreadable",
            "entit",
        ),
        Bad(
            "external_fifo_entity",
            with_doctype(f'<!ENTITY xxe SYSTEM "{fifo}">', "&xxe;"),
            "library_unreadable",
            "entit",
        ),
        Bad(
            "external_http_entity",
            with_doctype(f'<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/x">', "&xxe;"),
            "library_unreadable",
            "entit",
        ),
        Bad(
            "external_parameter_entity",
            with_doctype(f'<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd">\n%p;'),
            "library_unreadable",
            "entit",
        ),
        Bad("undefined_entity", bad_utf8(b"&nope;"), "library_unreadable", "entity"),
        Bad("binary_plist", lambda good: b"bplist00" + good[:100], "library_unreadable", "binary"),
        Bad(
            "html",
            lambda good: b"<html><body>hi</body></html>",
            "library_unreadable",
            "property list",
        ),
        Bad("directory_in_its_place", lambda good: None, "library_unreadable", "directory"),
        Bad("fifo_in_its_place", lambda good: None, "library_unreadable", "regular file"),
        # Well-formed but empty: not an error, yet not trusted (the mass-removal guard).
        Bad("no_tracks_key", lambda good: render_plist([]), "mass_removal_held", ""),
    ]
    return cases


def external_dtd(port: int) -> Callable[[bytes], bytes]:
    """A DOCTYPE naming an external DTD by URL: harmless as long as it is never fetched."""

    def make(good: bytes) -> bytes:
        return good.replace(
            b'"http://www.apple.com/DTDs/PropertyList-1.0.dtd"',
            f'"http://127.0.0.1:{port}/PropertyList-1.0.dtd"'.encode(),
        )

    return make


def put_in_place(d: DaemonProc, bad: Bad, good: bytes) -> None:
    data = bad.make(good)
    if data is not None:
        write_library(d.library, data, by_rename=bad.name != "zero_bytes")
        return
    d.library.unlink()
    if bad.name == "directory_in_its_place":
        d.library.mkdir()
    else:
        os.mkfifo(d.library)


def restore(d: DaemonProc, good: bytes) -> None:
    if d.library.is_dir():
        d.library.rmdir()
    elif d.library.exists() and not d.library.is_file():
        d.library.unlink()
    write_library(d.library, good)


def test_bad_library_files_give_a_clear_log_line_and_no_events(
    report: Report, tmp_path: Path
) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    good = lib.render()
    canary = tmp_path / "secret.txt"
    canary.write_text("secret")
    fifo = tmp_path / "entity.fifo"
    os.mkfifo(fifo)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    tally = report.case("bad_library_files")
    failures: list[str] = []
    with faulty_env(good, library={"settle_seconds": 0.05}) as d:
        entries = seed_answers(d, 30)
        d.start()
        d.wait_log("flush_finished")
        snapshot = d.snapshot_tracks()
        for bad in bad_files(canary, fifo, port):
            tally.tried += 1
            mark = d.mark()
            put_in_place(d, bad, good)
            problems = check_refused(d, mark, bad)
            mark = d.mark()
            restore(d, good)
            d.wait_log("scan_finished", after=mark, timeout=20)
            found, lost = check_unchanged(d, mark, snapshot, len(entries))
            problems += found
            tally.lost += lost
            failures += [f"{bad.name}: {p}" for p in problems]
            tally.survived += not problems
        # Harmless: an external DTD in the DOCTYPE (every real library names Apple's).
        tally.tried += 1
        mark = d.mark()
        write_library(d.library, external_dtd(port)(good.replace(b"Track 000007", b"Seven")))
        event = d.wait_log("track_modified", after=mark)
        assert event["new"] == {"name": "Seven"}
        tally.survived += 1
        assert d.stop()[0] == 0
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        conn = None
    listener.close()
    assert conn is None, "the daemon opened a connection for an external entity or DTD"
    # Nobody ever opened the FIFO for reading (a reader would have blocked the parse).
    with pytest.raises(OSError):
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert not failures, failures


def check_refused(d: DaemonProc, mark: int, bad: Bad) -> list[str]:
    problems: list[str] = []
    try:
        line = d.wait_log(bad.log, after=mark, timeout=15)
    except AssertionError as err:
        return [str(err).splitlines()[0]]
    text = str(line.get("reason") or line.get("hint") or "")
    if bad.says and bad.says.lower() not in text.lower():
        problems.append(f"{bad.log} does not say {bad.says!r}: {text!r}")
    if bad.log == "library_unreadable" and str(d.library) not in text:
        problems.append(f"{bad.log} does not name the file: {text!r}")
    with d.client() as c:
        status = c.status()
        settle(c)
    if bad.log == "library_unreadable" and not status["library"]["reader_error"]:
        problems.append("status shows no reader_error")
    problems += [f"unexpected {e['event']}" for e in d.events_since(mark, *TRACK_EVENTS)]
    return problems


def check_unchanged(
    d: DaemonProc, mark: int, snapshot: dict[str, Any], entries: int
) -> tuple[list[str], int]:
    """Problems after the good file is back, and how many entries or tracks were lost."""
    problems = [f"unexpected {e['event']}" for e in d.events_since(mark, *TRACK_EVENTS)]
    with d.client() as c:
        settle(c)
        status = c.status()
        cached = c.stats()["cache"]["total_entries"]
    if status["library"]["reader_error"] or status["library"]["held_removals"]:
        problems.append(f"still degraded after the good file came back: {status['library']}")
    lost = entries - cached
    if lost:
        problems.append(f"{lost} cache entries lost")
    now = d.snapshot_tracks()
    changed = sum(1 for pid, row in snapshot.items() if now.get(pid) != row)
    if changed or len(now) != len(snapshot):
        problems.append(f"snapshot changed ({changed} tracks differ)")
    return problems, lost + changed


def test_duplicate_and_missing_persistent_ids_are_warned_about_not_evented(
    report: Report,
) -> None:
    lib = SynthLibrary.generate(N_TRACKS)
    tally = report.case("bad_library_files")
    with faulty_env(lib.render(), library={"settle_seconds": 0.05}) as d:
        d.start()
        d.wait_log("flush_finished")
        # A later copy of a track under the same Persistent ID (a botched merge): warned, the
        # first one kept, no event.
        tally.tried += 1
        first = next(iter(lib.tracks.values()))
        dup = {**first, "Track ID": 99999, "Name": "Impostor"}
        mark = d.mark()
        write_library(d.library, render_plist([*lib.tracks.values(), dup]))
        warning = d.wait_log("library_warning", after=mark)
        assert (
            "Persistent ID" in warning["warning"] and first["Persistent ID"] in warning["warning"]
        )
        d.wait_log("scan_finished", after=mark)
        assert not d.events_since(mark, *TRACK_EVENTS)
        with d.client() as c:
            assert c.status()["library"]["duplicate_ids"] == 1
            track = c.track(first["Persistent ID"])
        assert track is not None and track["name"] == first["Name"]
        tally.survived += 1
        # New tracks without a Persistent ID: added under fallback ids, warned about; the same
        # file written again gives the same ids, so no event.
        tally.tried += 1
        extra = [
            {
                **first,
                "Track ID": 50000 + i,
                "Persistent ID": f"GONE{i}",
                "Name": f"Old {i}",
                "Location": f"file:///old/{i}.mp3",
            }
            for i in range(3)
        ]
        tracks = [*lib.tracks.values(), *extra]
        mark = d.mark()
        write_library(d.library, render_plist(tracks, without_pid={f"GONE{i}" for i in range(3)}))
        warning = d.wait_log("library_warning", after=mark)
        assert "no Persistent ID" in warning["warning"]
        d.wait_log("scan_finished", after=mark)
        # The scan logs scan_finished before the publisher logs its events: wait for them.
        added = wait_for(lambda: len(e := d.events_since(mark, "track_added")) >= 3 and e)
        assert len(added) == 3 and all(e["persistent_id"].startswith("~") for e in added)
        assert not d.events_since(mark, "track_removed", "track_modified", "cache_invalidated")
        mark = d.mark()
        write_library(d.library, render_plist(tracks, without_pid={f"GONE{i}" for i in range(3)}))
        d.wait_log("scan_finished", after=mark)
        assert not d.events_since(mark, *TRACK_EVENTS)
        with d.client() as c:
            assert c.status()["library"]["without_persistent_id"] == 3
        tally.survived += 1
        assert d.stop()[0] == 0
