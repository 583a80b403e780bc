"""Load generator for the control socket: N blocking clients doing `cache.get` or `cache.put`
round trips on the albums of `stores.cache_entries` (a put replaces an existing answer, so the
cache keeps its size).

Run as a subprocess by the benchmark (so the clients' own Python work does not share a GIL with
the harness); prints one JSON line: how many calls finished and each call's duration in µs.

    python -m tests.benchmarks.socket_load SOCKET CLIENTS SECONDS ALBUMS [get|put]
"""

from __future__ import annotations

import random
import sys
import threading
import time

import orjson

from daemon.client import MusicdClient
from tests.benchmarks.stores import cache_entry
from tests.support import SOURCES


def main(argv: list[str]) -> int:
    socket_path, clients, seconds, albums = argv[0], int(argv[1]), float(argv[2]), int(argv[3])
    put = (argv[4] if len(argv) > 4 else "get") == "put"
    durations: list[list[int]] = [[] for _ in range(clients)]
    misses = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(n: int) -> None:
        rng = random.Random(n)
        keys = []
        for _ in range(1000):
            e = cache_entry(rng.randrange(albums), rng.choice(SOURCES))
            keys.append((e["artist"], e["album"], e["source"], e["data"]))
        out = durations[n]
        with MusicdClient(socket_path, timeout=10) as c:
            c.ping()
            start.wait()
            i = 0
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline[0]:
                    break
                artist, album, source, data = keys[i % len(keys)]
                if put:
                    c.cache_put(artist, album, source, data=data, metadata={"client": n})
                elif c.cache_get(artist, album, source) is None:
                    misses[n] += 1
                out.append(int((time.perf_counter() - t0) * 1e6))
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds + 3600
    start.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    flat = [d for ds in durations for d in ds]
    sys.stdout.buffer.write(
        orjson.dumps({"calls": len(flat), "seconds": elapsed, "misses": sum(misses), "us": flat})
        + b"\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
