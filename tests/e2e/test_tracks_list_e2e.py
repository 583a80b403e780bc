"""`tracks.list` paged over a 100k-track library while it changes: the pages plus
`changes.since(first page's cursor)` reproduce the final state exactly."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from daemon.client import MusicdClient
from tests.benchmarks.generate import generate_library, rename_album
from tests.support import daemon_env, wait_for, write_library

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRACKS = 100_000
TRACK_TYPES = ("track_added", "track_modified", "track_removed")


def _block(data: bytes, at: int) -> tuple[int, int]:
    """The start and end of the track dict around byte `at`."""
    start = data.rindex(b"\n\t\t<key>", 0, at) + 1  # a track key, not a field key
    end = data.index(b"\t\t</dict>\n", at) + len(b"\t\t</dict>\n")
    return start, end


def remove_tracks_of(data: bytes, title: bytes) -> bytes:
    cuts: list[tuple[int, int]] = []
    at = data.find(b"<key>Album</key><string>" + title)
    while at >= 0:
        cuts.append(_block(data, at))
        at = data.find(b"<key>Album</key><string>" + title, cuts[-1][1])
    parts, last = [], 0
    for start, end in cuts:
        parts.append(data[last:start])
        last = end
    parts.append(data[last:])
    return b"".join(parts)


def add_copy_of(data: bytes, title: bytes, n: int) -> bytes:
    """A new track: a copy of one of the album's, with a new id and persistent id."""
    start, end = _block(data, data.index(b"<key>Album</key><string>" + title))
    block = data[start:end]
    old_id = block[block.index(b"<key>") + 5 : block.index(b"</key>")]
    pid_at = block.index(b"<key>Persistent ID</key><string>") + 32
    new = block.replace(b"<key>" + old_id + b"</key>", f"<key>{900000 + n}</key>".encode(), 1)
    new = new.replace(
        b"<integer>" + old_id + b"</integer>", f"<integer>{900000 + n}</integer>".encode(), 1
    )
    pid_at = new.index(b"<key>Persistent ID</key><string>") + 32
    new = new[:pid_at] + f"{0xADD00000 + n:016X}".encode() + new[pid_at + 16 :]
    return data[:end] + new + data[end:]


def apply(state: dict[str, dict[str, Any]], event: dict[str, Any]) -> None:
    if event["type"] == "track_removed":
        state.pop(event["persistent_id"], None)
    else:
        state[event["track"]["persistent_id"]] = event["track"]


def test_list_then_changes_reproduce_the_final_state_of_100k_tracks() -> None:
    data = generate_library(TRACKS, seed=11)
    with daemon_env(data) as d:
        d.start()
        d.wait_log("snapshot_built", timeout=180)
        titles = [f"Album {i:06d}".encode() for i in range(1, 400, 3)]
        last_title = "Album 000031"
        done = threading.Event()

        def edit() -> None:
            # Renames, removals and additions while the pages are being read.
            nonlocal data
            for n in range(6):
                if n % 3 == 0:
                    data, _ = rename_album(data, int(titles[n][6:]), f"Renamed {n}")
                elif n % 3 == 1:
                    data = remove_tracks_of(data, titles[n])
                else:
                    data = add_copy_of(data, titles[n], n)
                write_library(d.library, data)
                time.sleep(0.5)
            data, _ = rename_album(data, int(last_title[6:]), "Final")
            write_library(d.library, data)
            done.set()

        state: dict[str, dict[str, Any]] = {}
        editor = threading.Thread(target=edit)
        with MusicdClient(d.socket, timeout=120) as client:
            editor.start()
            cursor: str | None = None
            pages = 0
            for page in client.iter_track_pages(limit=5000):
                cursor = cursor or page["cursor"]
                pages += 1
                for t in page["tracks"]:
                    state[t["persistent_id"]] = t
                time.sleep(0.2)  # a slow reader: the edits land between pages
            editor.join()
            assert cursor is not None and pages >= 20

            marker = next(
                pid for pid, t in state.items() if (t["album"] or "").startswith(last_title)
            )

            def settled() -> bool:
                track = client.track(marker)
                merged = track is not None and track["album"] == "Final"
                return merged and client.status()["pending_events"] == 0

            wait_for(settled, timeout=120, what="the last edit merged")
            final = d.snapshot_tracks()
            for batch in client.iter_changes(cursor, limit=10000, types=TRACK_TYPES):
                assert not batch["resync"]
                for event in batch["events"]:
                    apply(state, event)
        assert done.is_set()
        assert 99_900 < len(final) < 100_000
        assert state.keys() == final.keys()
        assert state == final, "list + changes differ from the final state"
        assert d.stop()[0] == 0
