"""Fault-injection helpers: soak iterations, cached answers to seed, the daemon set up for faults.

The daemon is the one every test runs (`tests.support.DaemonProc`); faults are injected only at
process boundaries: signals, resource limits, file system state.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from daemon.client import MusicdClient
from tests.support import (
    SOURCES,
    DaemonProc,
    album_of,
    artist_of,
    daemon_env,
    db_seed_cache,
    wait_for,
)


def soak_factor() -> int:
    """How many times the normal iterations to run: `MUSICD_SOAK=1` means 10, `=N` means N."""
    raw = os.environ.get("MUSICD_SOAK", "").strip()
    if not raw or raw == "0":
        return 1
    n = int(raw)
    return 10 if n == 1 else max(n, 1)


def iterations(base: int) -> int:
    return base * soak_factor()


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for a fuzz test against one running daemon: `examples` times the
    soak factor, the same examples every run (a failure is reproducible), no deadline (the
    daemon's answer time is not the property), and the daemon fixture shared by all examples."""
    return settings(
        max_examples=iterations(examples),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
        derandomize=True,
    )


def cache_entry(artist: str, album: str, source: str, payload: int = 0) -> dict[str, Any]:
    """A cached answer as `tests.support.db_seed_cache` takes it."""
    return {
        "artist": artist,
        "album": album,
        "source": source,
        "success": True,
        "data": {"year": 1959, "pad": "x" * payload},
        "metadata": {},
        "created_at": 1_700_000_000.0,
        "expires_at": None,
    }


def seed_answers(
    d: DaemonProc, albums: int, *, sources: tuple[str, ...] = SOURCES, payload: int = 0
) -> list[dict[str, Any]]:
    """Put an answer per source for albums 0..albums-1 (of a `SynthLibrary`) into the daemon's
    database before it starts; returns them."""
    entries = [
        cache_entry(artist_of(a), album_of(a), s, payload) for a in range(albums) for s in sources
    ]
    db_seed_cache(d.state_dir, entries)
    return entries


# Runs the daemon in a user namespace of its own whose inotify instance limit is 0, so its
# watcher cannot start (as when the user's inotify instances are used up) without touching
# the limits of anything else on the machine.
NO_INOTIFY = [
    "unshare",
    "--user",
    "--map-root-user",
    "sh",
    "-c",
    'echo 0 > /proc/sys/user/max_inotify_instances && exec "$@"',
    "sh",
]


def no_inotify_supported() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*NO_INOTIFY, "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def ignore_sigxfsz_and_limit(max_bytes: int) -> Callable[[], None]:
    """A preexec_fn: file writes past `max_bytes` fail with EFBIG instead of killing."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.RLIM_INFINITY))

    return apply


@contextmanager
def faulty_env(library_bytes: bytes, **sections: dict[str, Any]) -> Iterator[DaemonProc]:
    """`daemon_env` for fault injection: info-level, unrotated logs, any cache source, torn log
    lines (a kill -9 cuts the last one short) counted rather than fatal, 30 s to start."""
    log = {"level": "info", "max_bytes": 1 << 30, **sections.pop("log", {})}
    # The cases make up their own source names to tell their entries apart.
    cache = {"sources": ["*"], **sections.pop("cache", {})}
    with daemon_env(
        library_bytes, torn_lines_ok=True, ready_timeout=30, log=log, cache=cache, **sections
    ) as d:
        yield d


def settle(c: MusicdClient) -> None:
    """Checkpoint, then wait until the journal's consumers have applied every recorded event
    (the tracks table and the cache follow a scan's commit a moment later)."""
    c.flush()
    wait_for(lambda: c.status()["pending_events"] == 0, 20, what="consumers caught up")


# -- hypothesis strategies for fuzzing the socket ------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def to_json(value: Any) -> bytes:
    # The stdlib writes any integer, and Infinity/NaN (not JSON: a parse error to answer).
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
