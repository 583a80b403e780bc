"""The scanner's compact baseline gives the events a full comparison gives.

The scanner keeps no track in memory between scans: the incremental reader names the entries
that changed and the former tracks come from the database (with the journal's events the
merger has yet to apply). Here the real scanner, reader and database record each version of a
library, and the events in the journal are compared with a plain `plistlib` diff of the two
versions: the same tracks added, removed and modified, with the same values.
"""

from __future__ import annotations

import datetime as dt
import os
import plistlib
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.events import TrackAdded, TrackModified, TrackRemoved
from daemon.journal import merger
from daemon.journal.follow import catch_up
from daemon.journal.hub import EventHub
from daemon.journal.recorder import Recorder
from daemon.journal.signal import Signal
from daemon.library import plist_tracks
from daemon.library.fast_xml import FastXmlReader
from daemon.library.identity import TrackKeys, fallback_id, normalize_persistent_id
from daemon.models import TRACK_FIELDS, Track
from daemon.stores import journal, tracks
from daemon.stores.database import open_database
from daemon.stores.writer import Writer
from tests.support import PLIST_KEYS, SHARED_FIXTURES
from tests.support.library import render_plist, write_library
from tests.watch.scanner_support import fresh_scanner

REAL_FILES = sorted(SHARED_FIXTURES.glob("*.xml")) if SHARED_FIXTURES.is_dir() else []
needs_real_files = pytest.mark.skipif(not REAL_FILES, reason=f"{SHARED_FIXTURES} is absent")

# -- the reference: plistlib, the identity rules, a dict comparison

_KINDS: dict[str, type | tuple[type, ...]] = {
    "year": int,
    "disc_number": int,
    "track_number": int,
    "track_id": int,
    "music_id": int,
    "database_id": int,
    "compilation": bool,
    "disabled": bool,
    "date_added": dt.datetime,
    "date_modified": dt.datetime,
}


def _kept(value: Any, field: str) -> Any:
    """A plist value as the daemon keeps it; a value of the wrong type counts as absent."""
    kind = _KINDS.get(field, str)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return None
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def reference_tracks(data: bytes) -> dict[str, dict[str, Any]]:
    """The library's tracks by key, read with plistlib and the identity rules."""
    keys = TrackKeys()
    rows: dict[str, dict[str, Any]] = {}
    for entry in plistlib.loads(data)["Tracks"].values():
        row: dict[str, Any] = dict.fromkeys(TRACK_FIELDS)
        row["compilation"] = row["disabled"] = False
        for key, field in PLIST_KEYS.items():
            value = _kept(entry.get(key), field)
            if value is not None:
                row[field] = value
        pid = row["persistent_id"]
        if pid:
            key = keys.claim(normalize_persistent_id(pid), fallback=False)
        else:
            location = entry.get("Location")
            total = entry.get("Total Time")
            key = keys.claim(
                fallback_id(
                    location=location if isinstance(location, str) else None,
                    name=row["name"],
                    artist=row["artist"],
                    album=row["album"],
                    total_time=total if isinstance(total, int) else None,
                    track_number=row["track_number"],
                    disc_number=row["disc_number"],
                ),
                fallback=True,
            )
        if key is not None:
            keys.tracks[key] = Track(key)
            rows[key] = {**row, "persistent_id": key}
    return rows


Change = tuple[str, str, Any]


def reference_diff(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> set[Change]:
    changes: set[Change] = {("track_removed", pid, None) for pid in old if pid not in new}
    for pid, row in new.items():
        before = old.get(pid)
        if before is None:
            changes.add(("track_added", pid, tuple(row.items())))
        elif before != row:
            changed = tuple(f for f in TRACK_FIELDS if before[f] != row[f])
            changes.add(("track_modified", pid, (tuple(row.items()), changed)))
    return changes


def journal_changes(events: list[Any]) -> set[Change]:
    changes: set[Change] = set()
    for e in events:
        if isinstance(e, TrackRemoved):
            changes.add((e.type, e.persistent_id, None))
        elif isinstance(e, TrackAdded):
            changes.add((e.type, e.persistent_id, tuple(e.track.to_dict().items())))
        elif isinstance(e, TrackModified):
            changes.add((e.type, e.persistent_id, (tuple(e.new.to_dict().items()), e.changed)))
    return changes


# -- the daemon's side: the real scanner on a real database


@dataclass
class Recorded:
    """What one scan recorded in the journal: its track events."""

    changes: set[Change]
    mode: str


def record_versions(
    versions: list[bytes], merge_after: list[bool] | None = None, *, streamed: bool = True
) -> Iterator[Recorded]:
    """Scan each version in turn (the first builds the snapshot); yield each scan's events.

    `merge_after[i]`: let the snapshot's merger catch up after scan i (otherwise the next
    diff reads the former tracks past the merger's cursor from the journal). `streamed`: the
    reader compares a full read with the snapshot as it parses, in batches of 3 tracks, as
    the daemon's does (else a full read holds the whole library and is compared after).
    """
    results: list[Recorded] = []
    with tempfile.TemporaryDirectory(prefix="musicd-cb-") as tmp:
        root = Path(tmp)
        path = root / "Library.xml"
        state = root / "state"
        state.mkdir(mode=0o700)

        async def main() -> None:
            db = await anyio.to_thread.run_sync(open_database, state)
            head = tracks.HeadTracks(db.path, merger.CONSUMER)
            try:
                writer = Writer(db)
                hub = EventHub()
                recorder = Recorder(writer, hub, Signal(), last_seq=0)
                reader = FastXmlReader(path, snapshot=head if streamed else None)
                scanner = fresh_scanner(path, reader, recorder, snapshot=head)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(writer.run)
                    for i, data in enumerate(versions):
                        write_library(path, data)
                        last = journal.head(db.read_conn)
                        outcome = await scanner.scan("test", accept_removals=True)
                        assert outcome.ok, outcome.error
                        rows = journal.read(db.read_conn, last, -1, journal.TRACK_EVENT_TYPES)
                        events = [journal.event_from_row(*row) for row in rows]
                        results.append(Recorded(journal_changes(events), reader.last_mode))
                        if merge_after is None or merge_after[i]:
                            await catch_up(writer, merger.CONSUMER, merger.merge, lambda _: None)
                    writer.close()
                hub.close()
            finally:
                head.close()
                db.close()

        with patch.object(plist_tracks, "SINK_BATCH", 3):
            anyio.run(main)
    yield from results


def assert_same_events(
    versions: list[bytes], merge_after: list[bool] | None = None, *, streamed: bool = True
) -> list[str]:
    """Every scan after the first records the reference diff; returns each scan's mode."""
    modes = []
    previous: dict[str, dict[str, Any]] | None = None
    recorded_scans = record_versions(versions, merge_after, streamed=streamed)
    for data, recorded in zip(versions, recorded_scans, strict=True):
        now = reference_tracks(data)
        if previous is not None:
            assert recorded.changes == reference_diff(previous, now)
        previous = now
        modes.append(recorded.mode)
    return modes


# -- generated libraries


def track(i: int, **changes: Any) -> dict[str, Any]:
    a = i // 4
    t: dict[str, Any] = {
        "Track ID": 1000 + i,
        "Persistent ID": f"{0xB000000000000000 + i:016X}",
        "Name": f"Track {i}",
        "Artist": f"Artist {a % 5}",
        "Album Artist": f"Artist {a % 5}",
        "Album": f"Album {a}",
        "Genre": "Jazz",
        "Year": 1990 + a,
        "Track Number": i % 4 + 1,
        "Total Time": 200_000 + i,
        "Date Added": "2023-03-01T12:01:00Z",
        "Play Count": i,
        "Location": f"file:///Users/me/Music/{i:05d}.m4a",
    }
    t.update(changes)
    return t


def library(n: int) -> list[dict[str, Any]]:
    return [track(i) for i in range(n)]


def render(tracks_: list[dict[str, Any]]) -> bytes:
    # Track IDs are dict keys in the file: a repeated one would hide a track from plistlib.
    numbered = [{**t, "Track ID": 1000 + n} for n, t in enumerate(tracks_)]
    return render_plist(numbered)


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole"])
def test_generated_edits_give_the_full_comparison_events(streamed: bool) -> None:
    lib = library(40)
    versions = [render(lib)]

    def save() -> None:
        versions.append(render(lib))

    lib[3]["Name"] = "Renamed"  # a rename
    save()
    for t in lib[8:12]:  # an album renamed
        t["Album"] = "Album 2 (Deluxe)"
    save()
    del lib[20]  # a removal
    save()
    lib.insert(5, track(100))  # an addition, mid-library
    save()
    lib.append(lib.pop(0))  # reordered entries: only their new Track IDs are events
    lib[10], lib[30] = lib[30], lib[10]
    save()
    lib[7]["Play Count"] = 99  # a field the daemon does not keep: no events
    save()
    assert assert_same_events(versions, streamed=streamed)[1:] == ["fast"] * (len(versions) - 1)

    # Tracks without a Persistent ID and repeated ids: read in full, the same events.
    del lib[4]["Persistent ID"]
    lib[6]["Persistent ID"] = lib[9]["Persistent ID"]
    save()
    lib[4]["Name"] = "No id, renamed"  # keyed by its Location: a modification
    save()
    lib[6]["Persistent ID"] = track(6)["Persistent ID"]
    lib[4]["Persistent ID"] = track(200)["Persistent ID"]
    save()
    lib[1]["Genre"] = "Rock"  # plain again: fast again
    save()
    modes = assert_same_events(versions, streamed=streamed)
    assert modes[-1] == "fast"


@dataclass
class Edits:
    lib: list[dict[str, Any]]
    rng: random.Random
    next_id: int = 1000

    def apply(self, edit: str) -> None:
        lib, rng = self.lib, self.rng
        if not lib:
            edit = "add"
        pick = rng.randrange(len(lib)) if lib else 0
        if edit == "rename":
            field = rng.choice(["Name", "Artist", "Album Artist", "Album", "Genre"])
            lib[pick][field] = rng.choice(["X", "Ünïcödé & <Co>", "", "Album 1"])
        elif edit == "year":
            lib[pick]["Year"] = rng.randrange(1900, 2030)
        elif edit == "drop_field":
            lib[pick].pop(rng.choice(["Genre", "Year", "Album Artist"]), None)
        elif edit == "unkept":
            lib[pick]["Play Count"] = rng.randrange(1000)
        elif edit == "add":
            self.next_id += 1
            lib.insert(rng.randrange(len(lib) + 1), track(self.next_id))
        elif edit == "remove" and len(lib) > 1:
            del lib[pick]
        elif edit == "move":
            lib.insert(rng.randrange(len(lib)), lib.pop(pick))
        elif edit == "duplicate_id":
            other = lib[rng.randrange(len(lib))].get("Persistent ID")
            if other is not None:
                lib[pick]["Persistent ID"] = other
        elif edit == "no_id":
            lib[pick].pop("Persistent ID", None)
        elif edit == "new_id":
            self.next_id += 1
            lib[pick]["Persistent ID"] = track(self.next_id)["Persistent ID"]
        elif edit == "lower_id" and "Persistent ID" in lib[pick]:
            lib[pick]["Persistent ID"] = lib[pick]["Persistent ID"].lower()


EDITS = (
    "rename",
    "year",
    "drop_field",
    "unkept",
    "add",
    "remove",
    "move",
    "duplicate_id",
    "no_id",
    "new_id",
    "lower_id",
)


@settings(
    max_examples=int(os.environ.get("COMPACT_BASELINE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    streamed=st.booleans(),
    size=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
    steps=st.lists(
        st.tuples(st.lists(st.sampled_from(EDITS), min_size=1, max_size=4), st.booleans()),
        min_size=1,
        max_size=6,
    ),
)
def test_random_edit_sequences_give_the_plistlib_diff(
    streamed: bool, size: int, seed: int, steps: list[tuple[list[str], bool]]
) -> None:
    edits = Edits(library(size), random.Random(seed))
    versions = [render(edits.lib)]
    merge_after = [True]
    for batch, merge in steps:
        for edit in batch:
            edits.apply(edit)
        versions.append(render(edits.lib))
        merge_after.append(merge)
    assert_same_events(versions, merge_after, streamed=streamed)


# -- real libraries


def real_edits(data: bytes, seed: int) -> list[bytes]:
    """Versions of a real library: tracks renamed, removed, moved, and an album renamed."""
    doc = plistlib.loads(data)
    entries = list(doc["Tracks"].items())
    rng = random.Random(seed)
    versions = [data]
    for step in range(4):
        if not entries:
            break
        key, entry = entries[rng.randrange(len(entries))]
        entry = dict(entry)
        if step == 0:
            entry["Name"] = f"{entry.get('Name', '')} (edited)"
            doc["Tracks"][key] = entry
        elif step == 1:
            album = entry.get("Album")
            for k, e in doc["Tracks"].items():
                if e.get("Album") == album:
                    doc["Tracks"][k] = {**e, "Album": f"{album} (Remastered)"}
        elif step == 2:
            del doc["Tracks"][key]
        else:
            items = list(doc["Tracks"].items())
            rng.shuffle(items)
            doc["Tracks"] = dict(items)
        entries = list(doc["Tracks"].items())
        versions.append(plistlib.dumps(doc, sort_keys=False))
    return versions


@needs_real_files
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_libraries_give_the_plistlib_diff(path: Path) -> None:
    data = path.read_bytes()
    # Music.app writes what plistlib writes, in another spacing: start from plistlib's own.
    first = plistlib.dumps(plistlib.loads(data), sort_keys=False)
    assert_same_events([data, first, *real_edits(first, seed=len(data))[1:]])
