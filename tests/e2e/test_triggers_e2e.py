"""Triggers on a real daemon: the command is a small script that records what it was given
(its stdin, its environment) and exits with the status a file says (tests/support/triggers.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import DaemonProc, daemon_env, wait_for
from tests.support.triggers import (
    WITH_HELPER,
    alive,
    delivered,
    edit,
    runs,
    trigger_cursor,
    trigger_daemon,
    trigger_table,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_trigger_starts_once_per_settled_burst_with_exactly_the_matching_events() -> None:
    with trigger_daemon(fields=["genre"], settle_seconds=1.5) as (d, out):
        d.start(extra_env={"MUSICD_TEST_SECRET": "not for the command"})
        d.wait_log("snapshot_built")
        mark = d.mark()
        # A burst: two genre edits and a rename in between (not one of its fields).
        edit(d, "So What", Genre="Modal")
        edit(d, "Jóga", Name="Joga")
        edit(d, "Hunter", Genre="Trip-Hop")
        done = d.wait_log("trigger_finished", after=mark, timeout=20)
        assert done["exit_status"] == 0 and done["committed"] and done["events"] == 2
        [run] = runs(out)
        events = delivered(run)
        assert [(e["type"], e["new"]) for e in events] == [
            ("track_modified", {"genre": "Modal"}),
            ("track_modified", {"genre": "Trip-Hop"}),
        ]
        assert all(e["cursor"].endswith(f".{e['seq']}") for e in events)
        env = run["env"]
        assert env["MUSICD_TRIGGER"] == "t" and env["MUSICD_EVENTS"] == "2"
        assert env["MUSICD_CURSOR_TO"] == events[-1]["cursor"]
        assert env["MUSICD_SOCKET"] == str(d.socket)
        assert "MUSICD_RESYNC" not in env and "MUSICD_TEST_SECRET" not in env
        assert set(env) <= {
            "PATH", "HOME", "LANG", "MUSICD_SOCKET", "MUSICD_TRIGGER", "MUSICD_CURSOR_FROM",
            "MUSICD_CURSOR_TO", "MUSICD_EVENTS", "LC_CTYPE",
        }  # fmt: skip
        # The command's output went to the log.
        assert d.find_logs("trigger_output", trigger="t", stream="stdout")
        assert d.find_logs("trigger_output", trigger="t", stream="stderr")
        # Its cursor is at (or, past events it does not want, beyond) the last one delivered.
        cursor = trigger_cursor(d)
        assert cursor is not None and cursor >= events[-1]["seq"]
        # A rename alone starts nothing; the next genre edit starts it once more, alone.
        mark = d.mark()
        edit(d, "So What", Name="So What?")
        edit(d, "So What?", Genre="Jazz")
        d.wait_log("trigger_finished", after=mark, timeout=20)
        assert [e["new"] for e in delivered(runs(out)[1])] == [{"genre": "Jazz"}]
        assert len(runs(out)) == 2


def first_run_fails(d: DaemonProc, out: Path, status: int) -> dict[str, Any]:
    """Start the daemon with a command that exits `status`, edit a genre, return the run's
    `trigger_finished`."""
    (out / "exit_code").write_text(str(status))
    d.start_built()
    mark = d.mark()
    edit(d, "So What", Genre="One")
    return d.wait_log("trigger_finished", after=mark, timeout=20)


def test_the_cursor_moves_only_when_the_command_exits_0() -> None:
    with trigger_daemon() as (d, out):
        done = first_run_fails(d, out, 3)
        assert done["exit_status"] == 3 and not done["committed"]
        assert done["retry_in_seconds"] == 10
        [event] = delivered(runs(out)[0])
        cursor = trigger_cursor(d)
        assert cursor is not None and cursor < event["seq"]
        with d.client() as client:
            assert client.status()["triggers"] == {"t": "backing-off"}


@pytest.mark.slow
def test_a_failing_command_is_retried_with_backoff_and_then_has_every_event_once() -> None:
    with trigger_daemon() as (d, out):
        mark = d.mark()
        assert not first_run_fails(d, out, 1)["committed"]
        # While it backs off, another edit; then the command is fixed.
        edit(d, "Hunter", Genre="Two")
        (out / "exit_code").write_text("0")
        started = time.monotonic()
        ok = d.wait_log("trigger_finished", after=mark, timeout=30, committed=True)
        assert time.monotonic() - started > 5  # it waited out the backoff (10 s from the failure)
        assert ok["events"] == 2
        mark = d.mark()
        edit(d, "Jóga", Genre="Three")
        d.wait_log("trigger_finished", after=mark, timeout=20, committed=True)
        first, retried, last = (delivered(run) for run in runs(out))
        assert [e["new"] for e in first] == [{"genre": "One"}]
        assert [e["new"] for e in retried] == [{"genre": "One"}, {"genre": "Two"}]
        assert [e["new"] for e in last] == [{"genre": "Three"}]
        # Exactly once after the last success: no seq in two successful runs.
        assert not {e["seq"] for e in retried} & {e["seq"] for e in last}


def test_kill_9_during_a_run_then_a_restart_delivers_the_events_again() -> None:
    with trigger_daemon() as (d, out):
        (out / "sleep").write_text("60")
        d.start_built()
        edit(d, "So What", Genre="Modal")
        wait_for(lambda: runs(out), 20, what="the first run")
        orphan = runs(out)[0]["pid"]
        d.kill9()
        try:
            (out / "sleep").unlink()
            mark = d.mark()
            d.start()
            d.wait_log("trigger_finished", after=mark, timeout=20, committed=True)
        finally:
            os.kill(orphan, signal.SIGKILL)
        first, again = runs(out)
        assert delivered(first) == delivered(again)
        cursor = trigger_cursor(d)
        assert cursor is not None and cursor >= delivered(again)[-1]["seq"]


def test_a_timeout_kills_the_commands_process_group() -> None:
    with daemon_env() as d:
        out = d.root / "out"
        out.mkdir()
        script = d.root / "helper.sh"
        script.write_text(WITH_HELPER)
        script.chmod(0o755)
        table = trigger_table(
            name="t", command=[str(script), str(out)], settle_seconds=0, timeout_seconds=1
        )
        with d.config_path.open("a") as fh:
            fh.write(table)
        d.start_built()
        mark = d.mark()
        edit(d, "So What", Genre="Modal")
        done = d.wait_log("trigger_finished", after=mark, timeout=20)
        assert done["timed_out"] and not done["committed"]
        assert done["exit_status"] == -signal.SIGTERM
        helper = int((out / "helper.pid").read_text())
        wait_for(lambda: not alive(helper), 5, what="the helper gone")


def test_shutdown_during_a_run_exits_within_5_s_and_commits_nothing() -> None:
    with trigger_daemon() as (d, out):
        # The command ignores SIGTERM: it is killed after the grace.
        (out / "sleep").write_text("60")
        (out / "ignore_term").write_text("")
        d.start_built()
        edit(d, "So What", Genre="Modal")
        wait_for(lambda: runs(out), 20, what="the run")
        before = trigger_cursor(d)
        status, seconds = d.stop()
        assert status == 0 and seconds < 5
        wait_for(lambda: not alive(runs(out)[0]["pid"]), 5, what="the command gone")
        assert trigger_cursor(d) == before


def test_a_config_others_may_write_runs_no_trigger_and_status_says_why() -> None:
    with trigger_daemon(settle_seconds=0) as (d, out):
        d.config_path.chmod(0o666)
        d.start_built()
        with d.client() as client:
            status = client.status()
        assert status["triggers"] == {}
        assert "writable by its group or by others" in status["triggers_refused"]
        assert d.find_logs("triggers_refused")
        edit(d, "So What", Genre="Modal")
        assert not d.find_logs("trigger_finished") and not (out / "runs").exists()
        assert trigger_cursor(d) is None
