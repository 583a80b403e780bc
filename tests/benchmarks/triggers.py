"""A trigger as a program meets it, on a real daemon with the default `library.settle_seconds`
(1 s) and a trigger with `settle_seconds = 0` and `min_interval_seconds = 0`:

    .venv/bin/python -m tests.benchmarks.triggers [--edits 10] [--plays 20]

- edit to start: seconds from writing a genre edit into the library file to the trigger's
  command starting (median, best and worst of `--edits`);
- starts caused by `--plays` rewrites of the file that change only what a play changes (Play
  Count, Play Date UTC): the figure a library where only plays happen sees (target 0).

A trigger's own `settle_seconds` adds to the first figure as it is.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import orjson

from tests.support import daemon_env, set_track_keys, wait_for

# The command: it notes when it started, as a file name.
_RECORDER = (
    "import pathlib, sys, time\n"
    "sys.stdin.read()\n"
    "(pathlib.Path(sys.argv[1]) / f'{time.time():.6f}').write_text('')\n"
)


def _starts(out: Path) -> list[float]:
    return sorted(float(p.name) for p in out.iterdir())


def measure(edits: int, plays: int) -> dict[str, float | int]:
    with daemon_env(library={"settle_seconds": 1.0}) as d:
        out = d.root / "starts"
        out.mkdir()
        (d.root / "recorder.py").write_text(_RECORDER)
        command = orjson.dumps([sys.executable, str(d.root / "recorder.py"), str(out)]).decode()
        with d.config_path.open("a") as fh:
            fh.write(
                f'\n[[triggers]]\nname = "bench"\ncommand = {command}\n'
                "settle_seconds = 0\nmin_interval_seconds = 0\n"
            )
        d.start_built()
        latencies = []
        for i in range(edits):
            before, mark = len(_starts(out)), d.mark()
            edited = time.time()
            set_track_keys(d.library, "So What", Genre=f"Genre {i}")
            wait_for(lambda n=before: len(_starts(out)) > n, 30, what="the command's start")
            latencies.append(_starts(out)[-1] - edited)
            # Let the run finish before the next edit.
            d.wait_log("trigger_finished", after=mark, timeout=30)
        before = len(_starts(out))
        for i in range(plays):
            mark = d.mark()
            played = {"Play Count": 100 + i, "Play Date UTC": datetime.datetime(2026, 1, 1, 0, i)}
            set_track_keys(d.library, "So What", **played)
            d.wait_log("scan_finished", after=mark, timeout=30)
        # A scan that found no change records no track event, so nothing wakes the trigger:
        # once the last play's scan is done there is nothing left to wait for.
        return {
            "edit_to_start_median_s": round(statistics.median(latencies), 3),
            "edit_to_start_min_s": round(min(latencies), 3),
            "edit_to_start_max_s": round(max(latencies), 3),
            "starts_after_plays": len(_starts(out)) - before,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--plays", type=int, default=20)
    args = parser.parse_args()
    result = measure(args.edits, args.plays)
    for key, value in result.items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
