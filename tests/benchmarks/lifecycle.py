"""The daemon's start and stop as programs meet them, each beside its baseline from the same run.

    .venv/bin/python -m tests.benchmarks.lifecycle [--tracks 60000] [--repeat 3]

- first start on a library of `--tracks` tracks: seconds until the socket answers, and until
  `tracks.list` stops saying `building` (the build committed); whether the first page said so;
- SIGTERM to exit: with another program holding a read transaction on `musicd.db` (which
  holds the final checkpoint back), beside the same stop with no reader. The daemon's own
  budget for a stop is 5 s.

Each stop figure is the median (and the worst) of `--repeat` daemons.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import statistics
import sys
import time
from contextlib import closing

from tests.support import SynthLibrary, daemon_env, wait_for


def first_start(tracks: int) -> dict[str, float | bool]:
    with daemon_env(SynthLibrary.generate(tracks).render()) as d:
        started = time.monotonic()
        d.start(wait_ready=False)
        d.wait_socket(timeout=120)
        serving = time.monotonic() - started
        with d.client() as client:
            first_page_building = bool(client.tracks_list(limit=1)["building"])

            def built() -> bool:
                return not client.tracks_list(limit=1)["building"]

            wait_for(built, 300, what="the build")
        done = time.monotonic() - started
        d.stop()
    return {"serving_s": serving, "built_s": done, "first_page_building": first_page_building}


def stop_seconds(*, reader: bool) -> float:
    with daemon_env() as d:
        d.start_built()
        with d.client() as client:
            client.cache_put("Artist", "Album", "musicbrainz", data={"year": 1959})
        db = d.state_dir / "musicd.db"
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            if reader:
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM api_cache").fetchone()
                with d.client() as client:
                    client.cache_put("Artist", "Album 2", "musicbrainz", data={"year": 1960})
            status, seconds = d.stop(signal.SIGTERM, timeout=60)
        if status != 0:
            raise SystemExit(f"the daemon exited with {status}: {d.stderr()[-500:]}")
        return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.lifecycle")
    parser.add_argument("--tracks", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    start = first_start(args.tracks)
    print(f"first start, {args.tracks} tracks:")
    print(f"  socket answers after        {start['serving_s']:6.2f} s")
    print(f"  build committed after       {start['built_s']:6.2f} s")
    print(f"  first page said building    {start['first_page_building']}")
    print(f"SIGTERM to exit (median / worst of {args.repeat}; the daemon's budget is 5 s):")
    for label, reader in (("no reader (baseline)", False), ("an outside reader", True)):
        runs = [stop_seconds(reader=reader) for _ in range(args.repeat)]
        print(f"  {label:28s}{statistics.median(runs):6.2f} s / {max(runs):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
