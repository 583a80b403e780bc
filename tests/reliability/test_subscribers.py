"""200 socket subscribers on a real daemon: each sees every event once, in seq order.

All subscribe first; then the library is edited (scans with track events), answers are put
(their checkpoints record `flush_finished` events) and rescans are asked for, overlapping. Once
the daemon is quiet, every subscriber's events after the first one made must be exactly the
journal's seqs: no gap, no duplicate, none out of order.
"""

from __future__ import annotations

import itertools
import random
from functools import partial

import anyio
import anyio.to_thread
import pytest

from daemon.client import AsyncMusicdClient
from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env
from tests.support.common import wait_for
from tests.support.database import journal_seqs
from tests.support.library import SynthLibrary, album_of, artist_of, write_library
from tests.support.runner import DaemonProc

SUBSCRIBERS = 200
EDITS = 12
SEED = 20261202

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def drive(d: DaemonProc, lib: SynthLibrary, rng: random.Random) -> tuple[int, int]:
    """Make events once everyone is subscribed; returns (last seq before, last seq after)."""
    with d.client() as c:
        wait_for(lambda: c.status()["subscribers"] >= SUBSCRIBERS, 30, what="all subscribed")
        # Every event after this one is delivered to all of them.
        before = int(c.status()["last_seq"])
        for k in range(EDITS):
            mark = d.mark()
            for pid in lib.album_pids(artist_of(k), album_of(k)):
                lib.tracks[pid]["Genre"] = f"Edit {k}"
            write_library(d.library, lib.render(), by_rename=rng.random() < 0.5)
            for n in range(rng.randint(1, 4)):
                c.cache_put(artist_of(k), album_of(k), f"s{k}-{n}", data={"k": k})
            if k % 4 == 3:
                c.rescan()
            d.wait_log("scan_finished", after=mark, timeout=20)
        mark = d.mark()
        c.cache_put(artist_of(0), album_of(0), "last", data={})
        d.wait_log("flush_finished", after=mark, timeout=20)
        wait_for(lambda: c.status()["pending_events"] == 0, 20, what="consumers caught up")
        return before, int(c.status()["last_seq"])


async def subscribe_all(d: DaemonProc, lib: SynthLibrary) -> tuple[list[list[int]], int, int]:
    seen: list[list[int]] = [[] for _ in range(SUBSCRIBERS)]
    reached = [anyio.Event() for _ in range(SUBSCRIBERS)]
    target: list[int] = []

    async def collect(i: int) -> None:
        async with AsyncMusicdClient(d.socket, timeout=30) as c:
            async for event in c.subscribe(event_timeout=60):
                seen[i].append(int(event["seq"]))
                if target and seen[i][-1] >= target[0]:
                    reached[i].set()

    async with anyio.create_task_group() as tg:
        for i in range(SUBSCRIBERS):
            tg.start_soon(collect, i)
        before, after = await anyio.to_thread.run_sync(partial(drive, d, lib, random.Random(SEED)))
        target.append(after)
        for i, seqs in enumerate(seen):
            if seqs and seqs[-1] >= after:
                reached[i].set()
        with anyio.fail_after(30):
            for event in reached:
                await event.wait()
        tg.cancel_scope.cancel()
    return seen, before, after


def test_200_subscribers_each_see_every_event_once_in_order(report: Report) -> None:
    lib = SynthLibrary.generate(600)
    tally = report.case("subscribers")
    with faulty_env(
        lib.render(),
        library={"settle_seconds": 0.05, "verify_seconds": 3600},
        state={"flush_interval_seconds": 0.05},
    ) as d:
        d.start()
        d.wait_log("scan_finished", reason="startup")
        seen, before, after = anyio.run(subscribe_all, d, lib)
        journal = [s for s in journal_seqs(d.state_dir) if before < s <= after]
        types = d.logs()
        assert d.stop()[0] == 0
    assert journal == list(range(before + 1, after + 1)), "journal seqs not contiguous"
    lost = 0
    for seqs in seen:
        tally.tried += 1
        window = [s for s in seqs if before < s <= after]
        ordered = all(a < b for a, b in itertools.pairwise(seqs))
        missing = len(set(journal) - set(window))
        lost += missing + len(window) - len(set(window))
        tally.survived += ordered and window == journal
    tally.lost = lost
    scans = sum(1 for e in types if e.get("event") == "scan_finished")
    flushes = sum(1 for e in types if e.get("event") == "flush_finished")
    tally.notes = {"events_each": len(journal), "scans": scans, "flushes": flushes}
    assert tally.survived == SUBSCRIBERS and not lost
