"""The control socket of a real `musicd run` subprocess: every method, events, load, refusals."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from daemon.client import MusicdClient
from tests.support import (
    DaemonProc,
    daemon_env,
    edit_tracks,
    find_track,
    load_plist,
    wait_for,
    write_config,
)
from tests.support.library import SynthLibrary

pytestmark = pytest.mark.timeout(90)


def subscribers(d: DaemonProc) -> int:
    with MusicdClient(d.socket) as client:
        count: int = client.status()["subscribers"]
        return count


def test_every_method_round_trips_and_shutdown_exits_zero() -> None:
    with daemon_env() as d:
        d.start_built()
        assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(d.socket.parent).st_mode) == 0o700
        so_what = find_track(load_plist(d.library)["Tracks"], Name="So What")["Persistent ID"]
        with MusicdClient(d.socket) as client:
            assert client.ping() == {
                "pong": True,
                "pid": d.proc.pid if d.proc else 0,
                "version": client.ping()["version"],
            }
            status = client.status()
            assert status["library"]["track_count"] == 39
            assert status["library"]["source"] == "xml"
            assert status["last_scan_at"] is not None and status["subscribers"] == 0

            stored = client.cache_put(
                "Miles Davis",
                "Kind of Blue",
                "musicbrainz",
                data={"year": 1959},
                metadata={"mbid": "m-1"},
            )
            assert stored["success"] is True and stored["expires_at"] is None
            failed = client.cache_put("Miles Davis", "Kind of Blue", "discogs", success=False)
            assert failed["expires_at"] is not None
            got = client.cache_get("MILES DAVIS", "kind of blue", "MusicBrainz")
            assert got is not None and got["data"] == {"year": 1959}
            assert got["metadata"] == {"mbid": "m-1"}

            stats = client.stats()
            assert stats["cache"]["total_entries"] == 2
            assert stats["cache"]["by_source"]["discogs"]["failed"] == 1
            assert stats["cache"]["hits"] == 1
            assert stats["events"]["emitted"]["scan_finished"] >= 1

            track = client.track(so_what)
            assert track is not None and track["album"] == "Kind of Blue"
            album = client.album_tracks("Miles Davis", "Kind of Blue")
            assert [t["name"] for t in album][:2] == ["So What", "Freddie Freeloader"]

            # Acknowledged means committed: another program sees the rows before any flush.
            assert {e["source"] for e in d.cache_entries()} == {"musicbrainz", "discogs"}
            flushed = client.flush()
            assert flushed["checkpointed"] is True and flushed["commits_made_durable"] >= 1

            rescan = client.rescan()
            assert (rescan["added"], rescan["modified"], rescan["removed"]) == (0, 0, 0)
            assert rescan["ok"] is True

            assert client.invalidate("miles davis", "KIND OF BLUE") == 2
            assert client.cache_get("Miles Davis", "Kind of Blue", "musicbrainz") is None
            client.cache_put("Björk", "Homogenic", "lastfm", data=None)
            assert client.cache_clear() == 1

            assert client.call("subscribe", types=["track_added"])["subscribed"] is True
            assert client.shutdown()["stopping"] is True
            client.wait_closed(10)
        assert d.proc is not None and d.proc.wait(10) == 0
        assert not d.socket.exists()
        assert d.find_logs("shutdown_requested", reason="control")


def test_subscriber_sees_track_modified_within_2s_of_the_write_and_cache_get_misses() -> None:
    with daemon_env() as d:  # settle_seconds = 0.2
        d.start_built()
        with MusicdClient(d.socket) as client:
            client.cache_put("Miles Davis", "Kind of Blue", "musicbrainz", data={"year": 1959})
            client.cache_put("Björk", "Homogenic", "musicbrainz", data={"year": 1997})
        received: list[tuple[float, dict[str, Any]]] = []

        def listen() -> None:
            with MusicdClient(d.socket) as subscriber:
                for event in subscriber.subscribe(["track_modified"], event_timeout=10):
                    received.append((time.monotonic(), event))
                    return

        listener = threading.Thread(target=listen)
        listener.start()
        wait_for(lambda: subscribers(d) == 1, what="the subscription")

        def rename(tracks: dict[str, dict[str, Any]]) -> None:
            find_track(tracks, Name="So What")["Album"] = "Kind of Blue (Legacy Edition)"

        edit_tracks(d.library, rename)
        written = time.monotonic()
        listener.join(10)
        assert received, "no track_modified event arrived"
        arrived, event = received[0]
        assert arrived - written < 2.0  # the latency requirement (settle is 0.2 s)
        assert event["changed"] == ["album"]
        assert event["old"] == {"album": "Kind of Blue"}
        assert event["new"] == {"album": "Kind of Blue (Legacy Edition)"}
        assert event["seq"] > 0

        with MusicdClient(d.socket) as client:
            wait_for(
                lambda: client.cache_get("Miles Davis", "Kind of Blue", "musicbrainz") is None,
                what="the old album's answer to be invalidated",
            )
            assert client.cache_get("Björk", "Homogenic", "musicbrainz") is not None
        assert d.stop()[0] == 0


@pytest.mark.slow
def test_200_concurrent_clients_doing_50_cache_gets_each_get_correct_answers() -> None:
    clients, calls = 200, 50
    with daemon_env() as d:
        d.start()
        with MusicdClient(d.socket) as client:
            for i in range(clients):
                client.cache_put(f"Artist {i}", f"Album {i}", "musicbrainz", data={"n": i})
        everyone_connected = threading.Barrier(clients)

        def work(i: int) -> int:
            wrong = 0
            with MusicdClient(d.socket, timeout=30) as client:
                client.ping()
                everyone_connected.wait(timeout=30)
                for n in range(calls):
                    j = (i + n) % clients
                    got = client.cache_get(f"ARTIST {j}", f"album {j}", "MusicBrainz")
                    wrong += got is None or got["data"] != {"n": j}
            return wrong

        with ThreadPoolExecutor(max_workers=clients) as pool:
            wrong = list(pool.map(work, range(clients)))
        assert wrong == [0] * clients
        with MusicdClient(d.socket) as client:
            stats = client.stats()
        assert stats["cache"]["hits"] == clients * calls
        assert stats["control"]["errors"] == 0
        assert d.stop()[0] == 0


def test_bad_input_never_disturbs_another_client_of_the_real_daemon() -> None:
    with daemon_env() as d:
        d.start()
        # The socket serves before the first scan has built the snapshot.
        d.wait_log("snapshot_built")
        with MusicdClient(d.socket) as steady, socket.socket(socket.AF_UNIX) as rude:
            rude.connect(str(d.socket))
            for junk in (b"{oops\n", b"[1, 2]\n", b'{"jsonrpc": "2.0", "id": 1, "method": "x"}\n'):
                rude.sendall(junk)
                assert steady.ping()["pong"] is True
            rude.sendall(b"y" * (1024 * 1024 + 1))
            rude.settimeout(10)
            answer = b""
            while chunk := rude.recv(65536):
                answer += chunk
            assert b"-32004" in answer.splitlines()[-1]
            d.wait_log("snapshot_built")  # the startup scan runs beside all this
            assert steady.status()["library"]["track_count"] == 39
        assert d.stop()[0] == 0


def test_second_daemon_on_the_same_socket_is_refused_and_the_first_keeps_it() -> None:
    with daemon_env() as d:
        d.start()
        other = d.root / "second"
        other.mkdir()
        config = write_config(other, d.library, control={"socket": str(d.socket)})
        second = d.run_to_exit(config)
        err = second.stderr
        assert second.returncode != 0
        assert f"another musicd is already listening on {d.socket}" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert d.socket.exists()
        with MusicdClient(d.socket) as client:
            assert client.ping()["pid"] == (d.proc.pid if d.proc else 0)
        assert d.stop()[0] == 0


def test_stale_socket_of_a_crashed_daemon_is_replaced() -> None:
    with daemon_env() as d:
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(d.socket))
        dead.close()
        d.start()
        assert d.find_logs("stale_socket_removed", socket=str(d.socket))
        with MusicdClient(d.socket) as client:
            assert client.ping()["pong"] is True
        assert d.stop()[0] == 0


def test_socket_directory_open_to_others_stops_the_daemon_with_one_line() -> None:
    with daemon_env() as d:
        shared = d.root / "shared"
        shared.mkdir()
        os.chmod(shared, 0o755)
        config = write_config(d.root, d.library, control={"socket": str(shared / "d.sock")})
        result = d.run_to_exit(config)
        err = result.stderr.strip()
        assert result.returncode != 0
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert f"socket directory {shared} is open to other users (mode 0755)" in err
        assert not (shared / "d.sock").exists()


def test_rescans_asked_while_one_waits_share_it() -> None:
    requests = 20
    with daemon_env(SynthLibrary.generate(3000).render()) as d:
        d.start()
        d.wait_log("flush_finished")
        mark = d.mark()
        together = threading.Barrier(requests)

        def rescan(_: int) -> dict[str, Any]:
            with MusicdClient(d.socket, timeout=60) as client:
                together.wait(10)
                answer: dict[str, Any] = client.rescan()
                return answer

        with ThreadPoolExecutor(requests) as pool:
            answers = list(pool.map(rescan, range(requests)))
        scans = [e for e in d.events_since(mark, "scan_finished") if e["reason"] == "requested"]
        # The one running when they came (if any) and the one they waited for together.
        assert len(answers) == requests
        assert 1 <= len(scans) <= 3, len(scans)
