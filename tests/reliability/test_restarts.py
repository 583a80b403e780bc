"""Many short lives of one daemon on one state dir: kill -9 right after acknowledged writes, and
event numbers that never repeat or go back across restarts.

Each cycle starts the daemon, subscribes to its events, checks what the previous lives left
(every acknowledged `cache.put` is in the database, the epoch is the first one), makes events
(its startup scan; in every third cycle also a `rescan` or an edit of the library), puts a few
answers (whose checkpoints record `flush_finished` events) and ends the daemon one of four ways
(fixed seed):

- `after_put`: `kill -9` the moment the last `cache.put` answer arrived (no flush asked);
- `during_puts`: `kill -9` at a random moment while a client puts answers back to back (an
  answer counts once it arrived);
- `clean`: SIGTERM (drain, final checkpoint), exit status 0;
- `term_then_kill`: SIGTERM, then `kill -9` a few milliseconds into the shutdown.

Every seq a subscriber saw, and every `status.last_seq`, must be above all seen before: a seq
handed out twice, or a number going back after a restart, is a loss.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest

from daemon.client import MusicdClient
from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env, iterations, soak_factor
from tests.support.common import wait_for
from tests.support.database import database_problems, db_cache_entries, journal_seqs
from tests.support.library import SynthLibrary, album_of, artist_of, write_library
from tests.support.runner import DaemonProc

KILLS = iterations(100)
CLEAN = iterations(10)
SEED = 20261201

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240 * soak_factor())]


class Subscriber:
    """Collects the seqs of every event one socket subscriber receives, until the daemon goes."""

    def __init__(self, d: DaemonProc) -> None:
        self.client = MusicdClient(d.socket, timeout=10)
        self.client.connect()
        self.events: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        with d.client() as c:
            wait_for(lambda: c.status()["subscribers"] >= 1, 10, what="subscribed")

    def _run(self) -> None:
        try:
            for event in self.client.subscribe(event_timeout=30):
                self.events.append(event)
        except Exception:
            return  # the daemon was killed mid-message

    def wait_for_type(self, kind: str, after: int) -> None:
        wait_for(
            lambda: any(e["type"] == kind for e in self.events[after:]),
            10,
            what=f"subscriber saw {kind}",
        )

    def close(self) -> list[int]:
        self._thread.join(timeout=15)
        self.client.close()
        return [int(e["seq"]) for e in self.events]


def put_stream(d: DaemonProc, acked: list[str], prefix: str, stop: threading.Event) -> None:
    """Put answers back to back until the daemon dies or `stop` is set."""
    n = 0
    with contextlib.suppress(Exception), d.client(timeout=10) as c:
        while not stop.is_set():
            n += 1
            source = f"{prefix}-{n}"
            c.cache_put(artist_of(n % 5), album_of(n % 5), source, data={"n": n})
            acked.append(source)


def end_life(d: DaemonProc, how: str, rng: random.Random, acked: list[str], tag: str) -> None:
    assert d.proc is not None
    if how == "after_put":
        with d.client() as c:
            for i in range(rng.randint(1, 6)):
                c.cache_put(artist_of(i), album_of(i), f"{tag}-{i}", data={"i": i})
                acked.append(f"{tag}-{i}")
        d.kill9()  # the very moment the last answer arrived
    elif how == "during_puts":
        stop = threading.Event()
        thread = threading.Thread(target=put_stream, args=(d, acked, tag, stop), daemon=True)
        thread.start()
        time.sleep(rng.uniform(0.0, 0.08))
        d.kill9()
        stop.set()
        thread.join(timeout=15)
    elif how == "clean":
        status, _ = d.stop(signal.SIGTERM, timeout=15)
        assert status == 0, d.stderr()[-2000:]
    else:  # term_then_kill
        os.kill(d.pid, signal.SIGTERM)
        time.sleep(rng.uniform(0, 0.05))
        with contextlib.suppress(ProcessLookupError):
            os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(timeout=15)


def test_kill_9_after_acknowledged_puts_and_seq_across_restarts(report: Report) -> None:
    rng = random.Random(SEED)
    lib = SynthLibrary.generate(30, per_album=5)
    hows = ["after_put", "during_puts"] * (KILLS // 2) + ["clean"] * CLEAN
    hows += ["term_then_kill"] * max(CLEAN // 3, 1)
    rng.shuffle(hows)
    kill_tally = report.case("kill_after_put")
    seq_tally = report.case("seq_across_restarts")
    ended: Counter[str] = Counter()
    acked: list[str] = []
    lost_entries: set[str] = set()
    seq_problems: list[str] = []
    seen_max = 0
    seen_total = 0
    epoch: str | None = None
    started = time.monotonic()
    with faulty_env(
        lib.render(),
        library={"settle_seconds": 0.02, "verify_seconds": 3600},
        state={"flush_interval_seconds": 0.05},
    ) as d:
        previous: str | None = None
        for cycle, how in enumerate([*hows, "clean"]):
            mark = d.mark()
            d.start()
            # Each start records its startup scan: events made after every restart.
            d.wait_log("scan_finished", after=mark, reason="startup", timeout=30)
            # What the previous life acknowledged is all there.
            present = {e["source"] for e in db_cache_entries(d.state_dir)}
            missing = [s for s in acked if s not in present]
            lost_entries.update(missing)
            problems = [f"cycle {cycle}: lost {len(missing)} entries"] if missing else []
            if previous in ("after_put", "during_puts"):
                kill_tally.tried += 1
                kill_tally.survived += not missing
            with d.client() as c:
                status = c.status()
            epoch = epoch or status["epoch"]
            if status["epoch"] != epoch:
                problems.append(f"cycle {cycle}: epoch changed to {status['epoch']}")
            if status["last_seq"] <= seen_max:
                problems.append(f"cycle {cycle}: last_seq {status['last_seq']} after {seen_max}")
            seen_max = max(seen_max, status["last_seq"])
            sub = Subscriber(d)
            if cycle % 3 == 1:
                # More events while subscribed: a scan of an edit, or a requested one.
                at = len(sub.events)
                if cycle % 2:
                    first = next(iter(lib.tracks.values()))
                    first["Genre"] = f"Genre {cycle}"
                    write_library(d.library, lib.render())
                else:
                    with d.client() as c:
                        c.rescan()
                sub.wait_for_type("scan_finished", at)
            if cycle == len(hows):
                d.stop()
            else:
                end_life(d, how, rng, acked, f"c{cycle}")
                ended[how] += 1
            previous = how
            seqs = sub.close()
            seen_total += len(seqs)
            for seq in seqs:
                if seq <= seen_max:
                    problems.append(f"cycle {cycle}: seq {seq} after {seen_max}")
                seen_max = max(seen_max, seq)
            seq_problems += problems
            seq_tally.tried += 1
            seq_tally.survived += not problems
        rows = journal_seqs(d.state_dir)
        assert rows == sorted(set(rows)), "journal seqs not unique and increasing"
        problems_db = database_problems(d.state_dir)
    kill_tally.lost = len(lost_entries)
    kill_tally.notes = {
        "acked_entries": len(acked),
        **{f"by_{k}": v for k, v in sorted(ended.items()) if k in ("after_put", "during_puts")},
    }
    seq_tally.lost = len(seq_problems)
    seq_tally.notes = {
        "events_seen": seen_total,
        "last_seq": seen_max,
        **{f"by_{k}": v for k, v in sorted(ended.items())},
        "seconds": round(time.monotonic() - started),
    }
    assert not lost_entries, sorted(lost_entries)[:10]
    assert not seq_problems, seq_problems[:10]
    assert not problems_db, problems_db
