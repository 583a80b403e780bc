"""A full disk or an unwritable state dir: commits fail, the daemon says why, keeps serving
reads, loses nothing it acknowledged, and recovers by itself once the problem is gone.

Tests run as root, so a chmod stops nothing. The faults used instead:

- `file_too_large`: RLIMIT_FSIZE on the daemon (SIGXFSZ ignored) lowered to a little above the
  files' sizes, so a write that grows the database or its WAL fails with EFBIG as on a full
  disk; raised again with prlimit(2) to "free space";
- `no_space`: the state dir is a small tmpfs that a filler file fills up (ENOSPC); skipped
  where mounting is not allowed;
- `read_only`: the immutable attribute on the state dir, the database and its WAL (EPERM even
  for root, even through the descriptors already open); skipped where chattr does not work;
- `dir_replaced_by_file`: the state dir is moved away and a plain file put in its place. The
  daemon's open descriptors follow the moved files, so commits still succeed there; what
  fails is the checkpoint (it syncs the WAL by its path).

In each, a client puts answers until one is refused (or a few hundred went through), the
library is edited, and then: `cache.put` answers a JSON-RPC error that names the cause,
`status` shows `database_error` (or `flush_error` where only checkpoints fail) and the scan
that could not be recorded as `scan_error`, reads still answer. Once the fault is gone, the
scanner's retry (~2 s) records the edit, `database_error` clears, and every acknowledged answer
is in the file.
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
from daemon.stores.schema import DB_FILE
from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env, ignore_sigxfsz_and_limit, seed_answers
from tests.support.common import wait_for
from tests.support.database import database_problems
from tests.support.library import SynthLibrary, album_of, artist_of, write_library
from tests.support.runner import DaemonProc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

N_TRACKS = 3000
# Answers put while the fault lasts: each adds a few pages to the WAL, so the files must grow
# and the fault is hit after some dozens; this many going through means it never was.
MAX_PUTS = 400
PAYLOAD = 16 * 1024
# RLIMIT_FSIZE: this much above the database (or the log) when the fault starts.
FSIZE_MARGIN = 64 * 1024


@dataclass
class Fault:
    inject: Callable[[DaemonProc], None]
    restore: Callable[[DaemonProc], None]
    # Whether commits are refused while it lasts (else only checkpoints fail).
    refuses_commits: bool = True


def _file_too_large() -> Fault:
    def inject(d: DaemonProc) -> None:
        # Not the WAL's size: SQLite reuses the WAL from its start after each checkpoint, so
        # the fault holds only once the database file itself cannot grow.
        biggest = max((d.state_dir / DB_FILE).stat().st_size, d.log_file.stat().st_size)
        limit = biggest + FSIZE_MARGIN
        resource.prlimit(d.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    def restore(d: DaemonProc) -> None:
        limit = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(d.pid, resource.RLIMIT_FSIZE, limit)

    return Fault(inject, restore)


def _no_space() -> Fault:
    def inject(d: DaemonProc) -> None:
        filler = d.state_dir / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()

    def restore(d: DaemonProc) -> None:
        (d.state_dir / "filler").unlink()

    return Fault(inject, restore)


def _immutable(d: DaemonProc) -> list[str]:
    return [str(d.state_dir / n) for n in (DB_FILE, DB_FILE + "-wal")] + [str(d.state_dir)]


def _read_only() -> Fault:
    def inject(d: DaemonProc) -> None:
        subprocess.run(["chattr", "+i", *_immutable(d)], check=True)

    def restore(d: DaemonProc) -> None:
        subprocess.run(["chattr", "-i", *_immutable(d)], check=True)

    return Fault(inject, restore)


def _dir_replaced_by_file() -> Fault:
    def away(d: DaemonProc) -> Path:
        return d.state_dir.with_name("state.away")

    def inject(d: DaemonProc) -> None:
        d.state_dir.rename(away(d))
        d.state_dir.write_bytes(b"not a directory")

    def restore(d: DaemonProc) -> None:
        d.state_dir.unlink()
        away(d).rename(d.state_dir)

    return Fault(inject, restore, refuses_commits=False)


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


@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_writes_fail_clearly_reads_go_on_and_it_recovers_by_itself(
    report: Report, fault_name: str
) -> None:
    if os.geteuid() != 0 and fault_name in ("no_space", "read_only"):
        pytest.skip("needs root")
    fault = FAULTS[fault_name]()
    lib = SynthLibrary.generate(N_TRACKS)
    tally = report.case(f"disk_full[{fault_name}]")
    tally.tried += 1
    # Checkpoints every 0.2 s: the flush_interval_seconds every test config has.
    with faulty_env(lib.render(), library={"settle_seconds": 0.05}) as d:
        if fault_name == "read_only" and not chattr_works(d.root):
            pytest.skip("chattr +i does not stop writes here")
        mount = (
            tmpfs_at(d.state_dir, "16m") if fault_name == "no_space" else contextlib.nullcontext()
        )
        with mount:
            if fault_name == "file_too_large":
                # Limited from the start (prlimit then lowers and raises it).
                d.preexec = ignore_sigxfsz_and_limit(1 << 40)
            seed_answers(d, 40, sources=("musicbrainz",))
            d.start()
            d.wait_log("scan_finished", reason="startup")
            d.wait_log("flush_finished")
            try:
                lost, notes = run_fault(d, lib, fault)
            finally:
                with contextlib.suppress(Exception):
                    fault.restore(d)
                assert d.stop()[0] == 0
            assert not database_problems(d.state_dir)
        tally.survived += 1
        tally.lost += lost
        tally.notes = notes


def put_until_refused(d: DaemonProc) -> tuple[list[str], RemoteError | None]:
    """Put answers on album 5 until one is refused; the acknowledged ones and the refusal."""
    acked: list[str] = []
    with d.client() as c:
        for i in range(MAX_PUTS):
            source = f"fill-{i}"
            try:
                c.cache_put(artist_of(5), album_of(5), source, data={"pad": "x" * PAYLOAD})
            except RemoteError as err:
                return acked, err
            acked.append(source)
    return acked, None


def run_fault(d: DaemonProc, lib: SynthLibrary, fault: Fault) -> tuple[int, dict[str, object]]:
    old_pid = lib.album_pids(artist_of(3), album_of(3))[0]
    fault.inject(d)
    acked, refused = put_until_refused(d)
    # An edit that must change the tracks table and invalidate album 3's answers.
    mark = d.mark()
    for pid in lib.album_pids(artist_of(3), album_of(3)):
        lib.tracks[pid]["Album"] = "Renamed While Full"
    write_library(d.library, lib.render())
    with d.client() as c:
        if fault.refuses_commits:
            assert refused is not None, f"{len(acked)} puts went through the fault"
            assert refused.rpc_code == -32001, refused
            assert "database error" in str(refused) and "retries by itself" in str(refused)
            d.wait_log("scan_not_recorded", after=mark, timeout=20)
            status = c.status()
            assert status["database_error"], status
            assert status["scan_error"], status
            # Still serving reads: the last recorded state, and every acknowledged answer.
            track = c.track(old_pid)
            assert track is not None and track["album"] == album_of(3)
            assert c.cache_get(artist_of(3), album_of(3), "musicbrainz") is not None
        else:
            assert refused is None, refused
            wait_for(lambda: c.status()["flush_error"], 20, what="flush error shown")
        assert c.cache_get(artist_of(4), album_of(4), "musicbrainz") is not None
        assert all(c.cache_get(artist_of(5), album_of(5), s) is not None for s in acked)
    fault.restore(d)
    with d.client() as c:
        # The scanner records the edit again by itself (~2 s); that commit clears the error.
        wait_for(
            lambda: c.track(old_pid)["album"] == "Renamed While Full", 30, what="edit recorded"
        )
        wait_for(lambda: not c.status()["database_error"], 10, what="database error cleared")
        wait_for(lambda: c.status()["pending_events"] == 0, 10, what="consumers caught up")
        assert c.status()["scan_error"] is None
        assert c.cache_get(artist_of(3), album_of(3), "musicbrainz") is None
        c.cache_put(artist_of(6), album_of(6), "after", data={})
        c.flush()
    snap = d.snapshot_tracks()
    lost = sum(1 for pid, row in lib.expected_rows().items() if snap.get(pid) != row)
    cached = {(e["album"], e["source"]) for e in d.cache_entries()}
    lost += sum(1 for a in range(40) if a != 3 and (album_of(a), "musicbrainz") not in cached)
    lost += sum(1 for s in acked if (album_of(5), s) not in cached)
    lost += (album_of(3), "musicbrainz") in cached
    notes: dict[str, object] = {"acked_during_fault": len(acked)}
    if refused is not None:
        notes["refused"] = str(refused).split("(")[1].split(":")[0] if "(" in str(refused) else "?"
    return int(lost), notes
