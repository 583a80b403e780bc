"""`triggers.list|run|pause|resume` and `musicd triggers` on a real daemon."""

from __future__ import annotations

import subprocess
import sys

import pytest

from daemon.errors import RemoteError
from tests.support import wait_for
from tests.support.triggers import delivered, edit, runs, trigger_daemon

pytestmark = pytest.mark.timeout(120)


def test_run_starts_a_waiting_trigger_now_and_force_runs_one_with_nothing_pending() -> None:
    # It would wait ten minutes after an edit: only triggers.run starts it within the test.
    with trigger_daemon(settle_seconds=600) as (d, out):
        d.start_built()
        with d.client() as client:
            nothing = client.triggers_run("t")
            assert not nothing["requested"] and "no events are pending" in nothing["reason"]
            edit(d, "So What", Genre="Modal")
            [t] = wait_for(
                lambda: [t for t in client.triggers_list()["triggers"] if t["state"] == "waiting"],
                10,
                what="the trigger waiting",
            )
            assert t["name"] == "t" and t["pending"] == 1 and t["next_start"] is not None
            mark = d.mark()
            assert client.triggers_run("t")["requested"]
            d.wait_log("trigger_finished", after=mark, timeout=20, committed=True)
            [event] = delivered(runs(out)[0])
            assert event["new"] == {"genre": "Modal"}
            [t] = client.triggers_list()["triggers"]
            assert t["last_exit_status"] == 0 and t["last_started_at"] is not None
            mark = d.mark()
            assert client.triggers_run("t", force=True)["requested"]
            d.wait_log("trigger_finished", after=mark, timeout=20, committed=True)
            forced = runs(out)[1]
            assert forced["stdin"] == "" and forced["env"]["MUSICD_EVENTS"] == "0"
            with pytest.raises(RemoteError, match="no trigger named 'other'"):
                client.triggers_run("other")


def test_a_paused_trigger_runs_again_only_once_resumed() -> None:
    with trigger_daemon(settle_seconds=0) as (d, out):
        d.start_built()
        with d.client() as client:
            assert client.triggers_pause("t")["name"] == "t"
            wait_for(lambda: client.status()["triggers"] == {"t": "paused"}, 10, what="paused")
            edit(d, "So What", Genre="Modal")
            assert client.triggers_run("t")["reason"] == "it is paused; resume it first"
            assert not (out / "runs").exists()
            mark = d.mark()
            client.triggers_resume("t")
            d.wait_log("trigger_finished", after=mark, timeout=20, committed=True)
        assert len(runs(out)) == 1


def test_the_triggers_command_lists_and_runs_and_status_shows_them() -> None:
    with trigger_daemon() as (d, _out):
        d.start_built()

        def musicd(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "daemon", "triggers", *args, "--socket", str(d.socket)],
                capture_output=True,
                text=True,
                timeout=30,
            )

        status = subprocess.run(
            [sys.executable, "-m", "daemon", "status", "--socket", str(d.socket)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "  triggers    t idle\n" in status.stdout
        listed = musicd("list")
        assert listed.returncode == 0 and listed.stdout.startswith("t: idle, 0 pending")
        refused = musicd("run", "t")
        assert refused.returncode == 1 and "no events are pending" in refused.stdout
        assert musicd("pause", "t").stdout.startswith("t: ")
        assert musicd("resume", "t").returncode == 0
