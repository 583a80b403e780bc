"""Well-behaved clients' latency and the daemon's peak RSS while a hostile client attacks, beside
the same clients' latency without it, measured in the same run on the same daemon.

    .venv/bin/python -m tests.benchmarks.hostile [--tracks 100000] [--clients 50] [--seconds 20]
        [--only ATTACK ...]

The attacks and the clients are tests/support/hostile.py, each side a process of its own. The
peak RSS is the daemon's VmHWM over the attack alone (reset through /proc/PID/clear_refs before
it, so the first build's read of the library does not count).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from tests.benchmarks.generate import generate_library
from tests.support import daemon_env, hostile
from tests.support.runner import DaemonProc


def _side(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.hostile", *map(str, args)], stdout=subprocess.PIPE
    )


def _result(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = proc.communicate()
    answer: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return answer


def _reset_peak(d: DaemonProc) -> None:
    Path(f"/proc/{d.pid}/clear_refs").write_text("5")


# Clients per process: a client's own Python work waits for its process's GIL, which would
# count in its latency.
PER_PROCESS = 10


def _phase(
    d: DaemonProc, clients: int, seconds: float, tracks: int, attack: list[str] | None
) -> tuple[dict[str, Any], dict[str, Any] | None, float, float]:
    _reset_peak(d)
    before = d.rss_kib()
    sides = [
        _side("clients", d.socket, min(PER_PROCESS, clients - n), seconds, tracks)
        for n in range(0, clients, PER_PROCESS)
    ]
    time.sleep(1)  # the clients connect first
    attacker = _side("attack", d.socket, seconds - 2, *attack) if attack is not None else None
    done = _result(attacker) if attacker is not None else None
    results = [_result(side) for side in sides]
    behaved = {
        "calls": sum(r["calls"] for r in results),
        "us": sorted(us for r in results for us in r["us"]),
        "wrong": [w for r in results for w in r["wrong"]],
    }
    return behaved, done, before / 1024, d.peak_rss_kib() / 1024


def _line(name: str, behaved: dict[str, Any], rss: float, peak: float) -> str:
    us = behaved["us"]
    return (
        f"  {name:<8} {behaved['calls']:>7} calls  p50 {hostile.percentile(us, 50):7.2f} ms  "
        f"p99 {hostile.percentile(us, 99):7.2f} ms  max {us[-1] / 1000 if us else 0:8.1f} ms  "
        f"RSS {rss:5.0f} MiB, peak {peak:5.0f} MiB  wrong {len(behaved['wrong'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", nargs="*", default=[], choices=hostile.ATTACKS)
    args = parser.parse_args(argv)
    data = generate_library(args.tracks)
    with daemon_env(data, log={"level": "info"}) as d:
        d.ready_timeout = 600
        d.start()
        d.wait_log("snapshot_built", timeout=600)
        hostile.seed(str(d.socket))
        time.sleep(2)  # let the first build's checkpoint pass
        print(
            f"hostile client: {args.tracks} tracks, {args.clients} clients "
            f"({args.clients // hostile.SUBSCRIBER_EVERY} subscribers), {args.seconds:.0f} s each"
        )
        base, _, rss, peak = _phase(d, args.clients, args.seconds, args.tracks, None)
        print(_line("baseline", base, rss, peak))
        hit, done, rss, peak = _phase(d, args.clients, args.seconds, args.tracks, args.only)
        print(_line("attack", hit, rss, peak))
        assert done is not None
        print(f"  attacks: {done['rounds']} rounds, {done['done']}")
        if done["errors"]:
            print(f"  cut off: {len(done['errors'])}, e.g. {done['errors'][0]}")
        with d.client() as c:
            control = c.stats()["control"]
        held = control.get("held_bytes_peak", 0) / 2**20  # none before the bound existed
        first = [e["event"] for e in d.logs()[:2]]
        print(
            f"  held peak {held:.0f} MiB, cut off {control.get('cut_off_memory_bound', 0)}; "
            f"log starts with {first}, rotated: "
            f"{(d.log_file.parent / (d.log_file.name + '.1')).exists()}"
        )
        d.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
