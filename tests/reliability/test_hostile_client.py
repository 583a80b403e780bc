"""A hostile client beside 50 well-behaved ones, against the real daemon: every well-behaved
request is answered correctly, the daemon stays up with bounded memory, and the log still
starts with the daemon's own lines (tests/support/hostile.py has both sides)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env, soak_factor
from tests.support import hostile, wait_for
from tests.support.library import SynthLibrary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240 * soak_factor())]

N_TRACKS = 3000
CLIENTS = 50
SECONDS = 12.0 * soak_factor()
# Generous: the daemon's own (about 60 MiB here) and every bound of the README's worst case.
MAX_PEAK_RSS_MIB = 400


def run_side(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.hostile", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def result_of(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-2000:]
    answer: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return answer


def test_a_hostile_client_cannot_stall_bloat_or_blind_the_daemon(report: Report) -> None:
    tally = report.case("hostile_client")
    lib = SynthLibrary.generate(N_TRACKS)
    # The log as configured by default (5 MiB, rotated): the flood must not rotate it.
    # Only the four usual sources: made-up ones are counted in one bucket.
    cache = {"sources": ["musicbrainz"]}
    with faulty_env(lib.render(), log={"max_bytes": 5 * 1024 * 1024}, cache=cache) as d:
        d.start()
        d.wait_log("flush_finished")
        first_lines = d.logs()[:3]
        hostile.seed(str(d.socket))
        clients = run_side("clients", d.socket, CLIENTS, SECONDS, N_TRACKS)
        with d.client() as c:
            # The well-behaved clients connect first (this one counts too).
            wait_for(
                lambda: c.stats()["control"]["connections_open"] > CLIENTS,
                30,
                what="the clients to connect",
            )
        attacker = run_side("attack", d.socket, SECONDS - 2)
        attack = result_of(attacker, SECONDS * 4 + 60)
        behaved = result_of(clients, SECONDS * 4 + 60)
        d.check_alive("the attack to end")
        with d.client() as c:
            assert c.ping()["pong"] is True
            control = c.stats()["control"]
            by_source = c.stats()["cache"]["by_source"]
        peak_mib = d.peak_rss_kib() / 1024
        assert d.stop()[0] == 0, d.stderr()[-2000:]
        # After the stop: the interval's count of lines not written is logged by then.
        logs = d.logs()
        rotated = (d.log_file.parent / (d.log_file.name + ".1")).exists()

    tally.tried = behaved["calls"]
    assert behaved["wrong"] == [] and behaved["stuck"] == 0, behaved["wrong"]
    assert behaved["calls"] > CLIENTS, "the well-behaved clients were served"
    assert all(n > 0 for n in behaved["events_seen"]), behaved["events_seen"]
    # Each attack was made (a connection cut off for holding too much counts as made).
    assert set(attack["done"]) | set(attack["cut_off"]) == set(hostile.ATTACKS), attack
    tally.survived = behaved["calls"]
    # The daemon's own history is still where it was, and not rotated away.
    assert not rotated
    assert logs[:3] == first_lines
    assert any(e["event"] == "daemon_started" for e in logs)
    rejected = [e for e in logs if e["event"] == "request_rejected"]
    assert len(rejected) <= 60 * (SECONDS / 60 + 2), len(rejected)
    assert any(e["event"] == "request_lines_suppressed" for e in logs)
    # Memory: bounded by the configuration, whatever was sent.
    assert peak_mib < MAX_PEAK_RSS_MIB, peak_mib
    assert len(by_source) <= 6, sorted(by_source)
    tally.notes.update(
        {
            "calls": behaved["calls"],
            "p99_ms": round(hostile.percentile(behaved["us"], 99), 1),
            "peak_rss_mib": round(peak_mib),
            "held_peak_mib": round(control["held_bytes_peak"] / 2**20),
            "cut_off": control["cut_off_memory_bound"],
            "rejected_lines": len(rejected),
            "attack_rounds": attack["rounds"],
        }
    )
