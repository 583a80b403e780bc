"""A full disk or an unwritable state dir: the flush fails, the old files stay, the daemon goes
on and recovers by itself once the problem is gone.

Tests run as root, so a chmod stops nothing. The faults used instead:

- `file_too_large`: RLIMIT_FSIZE on the daemon (SIGXFSZ ignored), so a big write fails with
  EFBIG as on a full disk; raised again with prlimit(2) to "free space";
- `no_space`: the state dir is a tiny tmpfs that a filler file fills up (ENOSPC); skipped
  where mounting is not allowed;
- `read_only`: the immutable attribute on the state dir (EPERM even for root); skipped where
  chattr does not work;
- `dir_replaced_by_file`: the state dir is moved away and a plain file put in its place.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.errors import RemoteError
from tests.reliability.conftest import Report
from tests.reliability.harness import (
    FaultyDaemon,
    SynthLibrary,
    album_of,
    artist_of,
    cache_document,
    cache_entry,
    faulty_env,
    ignore_sigxfsz_and_limit,
    state_files_load,
    write_library,
)
from tests.support import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

N_TRACKS = 3000
STATE_FILES = ("snapshot.json", "snapshot.meta.json", "api_cache.json", "delta.json")
# Big enough for the cache, the delta, the meta and the log; too small for snapshot.json.
FSIZE_LIMIT = 200 * 1024


@dataclass
class Fault:
    inject: Callable[[FaultyDaemon], None]
    restore: Callable[[FaultyDaemon], None]
    # Files that must be exactly as they were while the fault lasts (others may have been
    # replaced, whole, before the fault hit the big one).
    untouched: tuple[str, ...]


def _file_too_large() -> Fault:
    def inject(d: FaultyDaemon) -> None:
        resource.prlimit(d.pid, resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY))

    def restore(d: FaultyDaemon) -> None:
        limit = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(d.pid, resource.RLIMIT_FSIZE, limit)

    return Fault(inject, restore, untouched=("snapshot.json",))


def _no_space() -> Fault:
    def inject(d: FaultyDaemon) -> None:
        filler = d.state_dir / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()

    def restore(d: FaultyDaemon) -> None:
        (d.state_dir / "filler").unlink()

    return Fault(inject, restore, untouched=STATE_FILES)


def _read_only() -> Fault:
    def inject(d: FaultyDaemon) -> None:
        subprocess.run(["chattr", "+i", str(d.state_dir)], check=True)

    def restore(d: FaultyDaemon) -> None:
        subprocess.run(["chattr", "-i", str(d.state_dir)], check=True)

    return Fault(inject, restore, untouched=STATE_FILES)


def _dir_replaced_by_file() -> Fault:
    def away(d: FaultyDaemon) -> Path:
        return d.state_dir.with_name("state.away")

    def inject(d: FaultyDaemon) -> None:
        d.state_dir.rename(away(d))
        d.state_dir.write_bytes(b"not a directory")

    def restore(d: FaultyDaemon) -> None:
        d.state_dir.unlink()
        away(d).rename(d.state_dir)

    return Fault(inject, restore, untouched=STATE_FILES)


FAULTS = {
    "file_too_large": _file_too_large,
    "no_space": _no_space,
    "read_only": _read_only,
    "dir_replaced_by_file": _dir_replaced_by_file,
}


@contextlib.contextmanager
def tmpfs_at(path: Path, size: str) -> Iterator[None]:
    path.mkdir(mode=0o700, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def chattr_works(root: Path) -> bool:
    probe = root / "chattr-probe"
    probe.mkdir()
    try:
        if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
            return False
        try:
            (probe / "x").write_bytes(b"")
        except PermissionError:
            return True
        return False
    finally:
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
        shutil.rmtree(probe, ignore_errors=True)


def snapshot_bytes(d: FaultyDaemon) -> dict[str, bytes]:
    return {n: (d.state_dir / n).read_bytes() for n in STATE_FILES if (d.state_dir / n).exists()}


@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_flush_fails_keeps_old_files_and_recovers_by_itself(
    report: Report, fault_name: str
) -> None:
    if os.geteuid() != 0 and fault_name in ("no_space", "read_only"):
        pytest.skip("needs root")
    fault = FAULTS[fault_name]()
    lib = SynthLibrary.generate(N_TRACKS)
    seed = [cache_entry(artist_of(a), album_of(a), "musicbrainz") for a in range(40)]
    tally = report.case(f"disk_full[{fault_name}]")
    tally.tried += 1
    with faulty_env(
        lib.render(),
        library={"settle_seconds": 0.05},
        state={"flush_interval_seconds": 0.2},
    ) as d:
        if fault_name == "read_only" and not chattr_works(d.root):
            pytest.skip("chattr +i does not stop writes here")
        mount = (
            tmpfs_at(d.state_dir, "2m") if fault_name == "no_space" else contextlib.nullcontext()
        )
        with mount:
            if fault_name == "file_too_large":
                # Limited from the start (prlimit then lowers and raises it).
                d.preexec = ignore_sigxfsz_and_limit(1 << 40)
            d.state_dir.mkdir(mode=0o700, exist_ok=True)
            (d.state_dir / "api_cache.json").write_bytes(cache_document(seed))
            d.start()
            d.wait_log("flush_finished")
            before = snapshot_bytes(d)
            try:
                lost = run_fault(d, lib, fault, before)
            finally:
                with contextlib.suppress(Exception):
                    fault.restore(d)
                assert d.stop()[0] == 0
        tally.survived += 1
        tally.lost += lost


def run_fault(d: FaultyDaemon, lib: SynthLibrary, fault: Fault, before: dict[str, bytes]) -> int:
    fault.inject(d)
    # An edit that rewrites every file: an album renamed (cache invalidated, snapshot changed).
    mark = d.mark()
    for pid in lib.album_pids(artist_of(3), album_of(3)):
        lib.tracks[pid]["Album"] = "Renamed While Full"
    write_library(d.library, lib.render())
    failed = d.wait_log("flush_failed", after=mark, timeout=20)
    assert failed["error"]
    with d.client() as c:
        status = c.status()
        assert status["flush_error"], status
        assert status["dirty"] is True
        with pytest.raises(RemoteError) as err:
            c.flush()
        assert err.value.rpc_code == -32002
        # Still serving: the change is in memory, and the API cache answers.
        pid = lib.album_pids(artist_of(3), "Renamed While Full")[0]
        track = c.track(pid)
        assert track is not None and track["album"] == "Renamed While Full"
        assert c.cache_get(artist_of(3), album_of(3), "musicbrainz") is None
        assert c.cache_get(artist_of(4), album_of(4), "musicbrainz") is not None
    # Nothing on disk is half-written; the big file is exactly as it was.
    if d.state_dir.is_dir():
        now = snapshot_bytes(d)
        for name in fault.untouched:
            assert now.get(name) == before.get(name), f"{name} changed while the disk was full"
        assert not list(d.state_dir.glob(".*.tmp"))
    fault.restore(d)
    recovered = d.wait_log("flush_recovered", after=mark, timeout=30)
    assert recovered["previous_error"]
    with d.client() as c:
        wait_for(lambda: c.status()["flush_error"] is None, what="flush error cleared")
    assert not state_files_load(d.state_dir)
    snap = d.snapshot_tracks()
    lost = sum(1 for pid, row in lib.expected_rows().items() if snap.get(pid) != row)
    cached = {(e["album"], e["source"]) for e in d.cache_entries()}
    lost += sum(1 for a in range(40) if a != 3 and (album_of(a), "musicbrainz") not in cached)
    lost += (album_of(3), "musicbrainz") in cached
    return int(lost)
