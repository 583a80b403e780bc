"""Changes since a position, durable cursors and `subscribe(since=...)` against a real daemon:
a consumer that was away gets exactly what happened meanwhile, across a kill -9."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest

from daemon.client import ClientTimeout, MusicdClient
from daemon.errors import RemoteError
from tests.benchmarks.generate import generate_library, rename_album
from tests.support import (
    DaemonProc,
    daemon_env,
    db_meta,
    edit_tracks,
    find_track,
    load_plist,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

TRACK_TYPES = ("track_added", "track_modified", "track_removed")


def track_events(d: DaemonProc, consumer: str) -> list[dict[str, Any]]:
    """What `changes.since(consumer)` gives until caught up, without committing."""
    with MusicdClient(d.socket) as client:
        events: list[dict[str, Any]] = []
        for batch in client.iter_changes(consumer=consumer, limit=2, types=TRACK_TYPES):
            assert not batch["resync"], batch
            events += batch["events"]
        return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    for e in events:
        if e["type"] == "track_modified":
            out.append((e["type"], e["persistent_id"], e["new"]))
        elif e["type"] == "track_added":
            out.append((e["type"], e["track"]["persistent_id"], e["track"]["name"]))
        else:
            out.append((e["type"], e["persistent_id"], e["name"]))
    return out


def restart(d: DaemonProc, *, built: bool = False) -> None:
    mark = d.mark()
    d.start(wait_ready=False)
    d.wait_log("snapshot_built" if built else "daemon_started", after=mark, timeout=30)


def add_track(tracks: dict[str, dict[str, Any]], pid: str, name: str) -> None:
    template = dict(find_track(tracks, Name="So What"))
    template.update({"Track ID": 9001, "Persistent ID": pid, "Name": name, "Track Number": 9})
    tracks["9001"] = template


def head_cursor(d: DaemonProc) -> str:
    """The journal's head, as the position a program that starts now follows from."""
    with MusicdClient(d.socket) as client:
        cursor: str = client.changes_since(None)["cursor"]
    return cursor


@pytest.mark.slow
def test_consumer_gets_exactly_the_edits_made_while_away_across_kill_9() -> None:
    with daemon_env() as d:
        d.start_built()
        with MusicdClient(d.socket) as client:
            first = client.changes_since(consumer="year-updater")
            assert first["resync"] and "not committed" in first["reason"]
            tracks = [t for page in client.iter_track_pages(limit=7) for t in page["tracks"]]
            assert len(tracks) == 39
            done = client.cursor_commit("year-updater", first["cursor"])
            assert done["committed"] and done["previous"] is None
        # The consumer is gone; the library changes, the daemon dies hard, more changes.
        lib = load_plist(d.library)["Tracks"]
        so_what = find_track(lib, Name="So What")["Persistent ID"]
        hunter = find_track(lib, Name="Hunter")["Persistent ID"]
        joga = find_track(lib, Name="Jóga")["Persistent ID"]

        def rename(tracks: dict[str, dict[str, Any]]) -> None:
            find_track(tracks, Name="So What")["Album"] = "Kind of Blue (Legacy Edition)"

        def remove(tracks: dict[str, dict[str, Any]]) -> None:
            del tracks[next(k for k, t in tracks.items() if t["Name"] == "Hunter")]

        def add(tracks: dict[str, dict[str, Any]]) -> None:
            add_track(tracks, "00000000000A0DD1", "Blue in Green (Take 2)")

        # One scan each, so their order is the order they happened in.
        for n, edit in enumerate((rename, remove, add), start=1):
            edit_tracks(d.library, edit)
            wait_for(lambda n=n: len(track_events(d, "year-updater")) == n, what=f"event {n}")
        d.kill()  # kill -9: no drain, no checkpoint
        edit_tracks(d.library, lambda t: find_track(t, Name="Jóga").update(Name="Jóga (Live)"))
        restart(d)
        wait_for(lambda: len(track_events(d, "year-updater")) == 4, what="the fourth event")

        events = track_events(d, "year-updater")
        assert summary(events) == [
            ("track_modified", so_what, {"album": "Kind of Blue (Legacy Edition)"}),
            ("track_removed", hunter, "Hunter"),
            ("track_added", "00000000000A0DD1", "Blue in Green (Take 2)"),
            ("track_modified", joga, {"name": "Jóga (Live)"}),
        ]
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs))
        with MusicdClient(d.socket) as client:
            last = events[-1]["cursor"]
            assert client.cursor_commit("year-updater", last)["committed"]
            again = client.changes_since(consumer="year-updater", types=TRACK_TYPES)
            assert again["events"] == [] and not again["resync"] and not again["more"]
            # Never backwards, unless forced.
            back = client.cursor_commit("year-updater", first["cursor"])
            assert not back["committed"] and back["cursor"] == last
            assert client.cursor_commit("year-updater", first["cursor"], force=True)["committed"]
            consumers = client.stats()["consumers"]
            assert consumers["year-updater"]["behind"] > 0
            assert consumers["year-updater"]["protected"] is True
            assert not any(name.startswith("musicd.") for name in consumers)
        assert d.stop()[0] == 0


def count_events(d: DaemonProc, cursor: str, kind: str) -> int:
    with MusicdClient(d.socket) as client:
        return sum(
            len(batch["events"]) for batch in client.iter_changes(cursor, limit=10000, types=[kind])
        )


def titled_albums(data: bytes) -> list[int]:
    """The generated albums that have a title (a few have none)."""
    found = []
    for i in range(1000):
        try:
            rename_album(data, i, "probe")
        except ValueError:
            continue
        found.append(i)
    return found


@pytest.mark.slow
def test_subscribe_since_replays_then_goes_live_without_gap_or_duplicate() -> None:
    data = generate_library(3000, seed=3)
    with daemon_env(data) as d:
        d.start()
        d.wait_log("snapshot_built", timeout=60)
        start = head_cursor(d)
        # A couple of thousand events to replay (every track of 150 albums renamed)...
        albums = titled_albums(data)
        renamed = 0
        for i in albums[:150]:
            data, count = rename_album(data, i, f"Renamed {i}")
            renamed += count
        d.library.write_bytes(data)
        wait_for(
            lambda: count_events(d, start, "track_modified") >= renamed,
            timeout=60,
            what="the renames in the journal",
        )
        last_live = {"title": ""}

        def keep_editing() -> None:
            # ...and more keep coming while the replay runs.
            nonlocal data
            for i in albums[150:175]:
                data, _ = rename_album(data, i, f"Live {i}")
                d.library.write_bytes(data)
                last_live["title"] = f"Live {i}"
                threading.Event().wait(0.1)

        editor = threading.Thread(target=keep_editing)
        seen: list[dict[str, Any]] = []
        client = MusicdClient(d.socket, timeout=60)
        try:
            editor.start()
            for event in client.subscribe(since=start, event_timeout=30):
                seen.append(event)
                done = not editor.is_alive() and last_live["title"]
                if done and event.get("new", {}).get("album") == last_live["title"]:
                    break
        finally:
            editor.join()
            client.close()
        assert client.subscription is not None and client.subscription["resync"] is False
        seqs = [e["seq"] for e in seen]
        # Every event once, in order, none missing: the seqs are consecutive.
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert all(e["cursor"].endswith(f".{e['seq']}") for e in seen)
        seen_albums = {e["new"].get("album") for e in seen if e["type"] == "track_modified"}
        assert {f"Live {i}" for i in albums[150:175]} <= seen_albums
        assert len([e for e in seen if e["type"] == "track_modified"]) > renamed
        assert d.stop()[0] == 0


@pytest.mark.slow
def test_cursor_of_a_rebuilt_database_says_resync() -> None:
    with daemon_env() as d:
        d.start_built()
        old = head_cursor(d)
        assert d.stop()[0] == 0
        for path in d.state_dir.glob("musicd.db*"):
            path.unlink()
        restart(d, built=True)
        with MusicdClient(d.socket) as client:
            answer = client.changes_since(old)
            assert answer["resync"] and "another database" in answer["reason"]
            assert answer["events"] == [] and answer["cursor"] != old
            assert not client.changes_since(answer["cursor"])["resync"]
            with pytest.raises(RemoteError) as err:
                client.cursor_commit("x", old)
            assert err.value.rpc_code == -32602
        with MusicdClient(d.socket) as client:
            events = client.subscribe(since=old, event_timeout=0.5)
            with contextlib.suppress(ClientTimeout):
                next(events)  # the answer is read with the first event (or none comes)
            assert client.subscription is not None and client.subscription["resync"] is True
        assert d.stop()[0] == 0


def test_bad_positions_limits_names_and_batches_get_clear_errors() -> None:
    with daemon_env() as d:
        d.start_built()
        with MusicdClient(d.socket) as client:
            good = client.changes_since(None)["cursor"]
            epoch, seq = good.rsplit(".", 1)

            def refused(method: str, **params: Any) -> str:
                with pytest.raises(RemoteError) as err:
                    client.call(method, **params)
                assert err.value.rpc_code == -32602, err.value
                return str(err.value)

            assert "not a musicd cursor" in refused("changes.since", cursor="garbage")
            assert "not a musicd cursor" in refused("changes.since", cursor=good[:10])
            assert "not a musicd cursor" in refused("changes.since", cursor=good + "x")
            assert "ahead of" in refused("changes.since", cursor=f"{epoch}.{int(seq) + 1000}")
            assert "ahead of" in refused("subscribe", since=f"{epoch}.{int(seq) + 1000}")
            refused("changes.since", cursor=good, limit=0)
            refused("changes.since", cursor=good, limit=10001)
            refused("changes.since", cursor=good, consumer="a")
            refused("tracks.list", limit=10001)
            refused("cursor.get", consumer="")
            refused("cursor.get", consumer="x" * 201)
            assert "reserved" in refused("cursor.commit", consumer="musicd.snapshot", cursor=good)
            assert client.cursor_get("new")["cursor"] is None
            refused("cache.get_many", keys=[{"artist": "a", "album": "b"}])
            refused("cache.get_many", keys=[{"artist": "a", "album": "b", "source": "s"}] * 1001)

            entries: list[Any] = [
                {"artist": "A", "album": "B", "source": "musicbrainz", "success": True},
                {"artist": "A", "album": "C", "source": "musicbrainz", "success": "yes"},
                {"artist": "A", "album": "D", "source": "discogs", "success": True},
                "not an entry",
            ]
            with pytest.raises(RemoteError) as err:
                client.cache_put_many(entries)
            assert err.value.rpc_code == -32602 and "nothing was stored" in str(err.value)
            assert [e["index"] for e in err.value.data["errors"]]  # type: ignore[index] == [1, 3]
            assert client.cache_get("A", "B", "musicbrainz") is None

            # An `after` that does not exist: the page goes on where it would sort.
            ids = [t["persistent_id"] for t in client.tracks_list(limit=10000)["tracks"]]
            between = ids[4] + "0"
            page = client.tracks_list(between, limit=3, fields=["name"])
            assert [t["persistent_id"] for t in page["tracks"]] == ids[5:8]
            assert set(page["tracks"][0]) == {"persistent_id", "name"}
            refused("tracks.list", fields=["nope"])

        # A client that leaves in the middle of a replay harms nothing.
        # (From the build's position: one before it answers resync, with no replay.)
        built = db_meta(d.state_dir)["snapshot_built_seq"]
        quitter = MusicdClient(d.socket)
        quitter.call("subscribe", since=f"{epoch}.{built}")
        quitter.close()
        leaver = MusicdClient(d.socket)
        replayed = leaver.subscribe(since=f"{epoch}.{built}")
        # It is in the middle of the replay, then leaves.
        assert next(replayed)["seq"] == built + 1
        leaver.close()
        with MusicdClient(d.socket) as client:
            assert client.ping()["pong"]
            assert not client.changes_since(f"{epoch}.{built}")["resync"]
            wait_for(lambda: client.status()["subscribers"] == 0, what="both gone")
        assert not d.find_logs("event_forwarding_failed")
        assert not d.find_logs("connection_failed")
        assert d.stop()[0] == 0
