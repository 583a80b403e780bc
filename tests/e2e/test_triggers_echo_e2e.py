"""A trigger whose command announces its writes (writes.expect) and then makes them, standing
in for a genre updater writing to Music.app: its own echo does not start it again, a person's
edit of the same tracks does."""

from __future__ import annotations

import sqlite3
import sys

import pytest

from tests.support import DaemonProc, daemon_env, wait_for
from tests.support.triggers import delivered, edit, runs, trigger_cursor, trigger_table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# Records its run, then sets the genre of every track it was given to "Echo": announced first,
# then written to the library file as Music.app would.
UPDATER = """\
import json, os, pathlib, plistlib, sys
from daemon.client import MusicdClient
out, library = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
stdin = sys.stdin.read()
runs = out / "runs"
runs.mkdir(exist_ok=True)
name = runs / f"{len(list(runs.glob('*.json'))):04d}.json"
name.write_text(json.dumps({"env": dict(os.environ), "stdin": stdin, "pid": os.getpid()}))
pids = {json.loads(line)["persistent_id"] for line in stdin.splitlines()}
with MusicdClient(os.environ["MUSICD_SOCKET"]) as client:
    client.expect_writes("t", [{"persistent_id": p, "fields": {"genre": "Echo"}} for p in pids])
data = plistlib.loads(library.read_bytes())
for track in data["Tracks"].values():
    if track["Persistent ID"] in pids:
        track["Genre"] = "Echo"
library.write_bytes(plistlib.dumps(data, sort_keys=False))
"""


def echo_seqs(d: DaemonProc) -> list[int]:
    """The seqs of the modifications recorded as the updater's own."""
    conn = sqlite3.connect(f"file:{d.state_dir / 'musicd.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq FROM journal WHERE origin = 't' ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [int(seq) for (seq,) in rows]


def wait_echo_passed(d: DaemonProc, count: int) -> None:
    """Wait until the updater's `count`th echo is recorded and the trigger has looked past it
    (it moves its cursor past what does not match it, and would have run first if it did)."""
    seqs = wait_for(lambda: echo_seqs(d)[count - 1 :], 20, what=f"echo {count}")
    wait_for(lambda: (trigger_cursor(d) or 0) >= seqs[0], 20, what="the trigger past the echo")


def test_an_updaters_own_writes_do_not_start_it_again_and_a_persons_edit_does() -> None:
    with daemon_env() as d:
        out = d.root / "out"
        out.mkdir()
        (d.root / "updater.py").write_text(UPDATER)
        command = [sys.executable, str(d.root / "updater.py"), str(out), str(d.library)]
        table = trigger_table(
            name="t", command=command, fields=["genre"], settle_seconds=0.3, min_interval_seconds=0
        )
        with d.config_path.open("a") as fh:
            fh.write(table)
        d.start_built()
        edit(d, "So What", Genre="Modal")
        wait_echo_passed(d, 1)
        # A person edits the same track, then another one: each starts it, alone.
        edit(d, "So What", Genre="Person")
        wait_echo_passed(d, 2)
        edit(d, "Hunter", Genre="Trip-Hop")
        wait_echo_passed(d, 3)
        given = [[e["new"] for e in delivered(run)] for run in runs(out)]
        assert given == [[{"genre": "Modal"}], [{"genre": "Person"}], [{"genre": "Trip-Hop"}]]
        assert all(e["origin"] is None for run in runs(out) for e in delivered(run))
