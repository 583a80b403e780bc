"""What a Mac does to a library that Linux rarely does, reproduced with real faults on Linux.

- The library's directory is a symlink (a `~/Music` on another volume; the demo's temp dir
  under `/var/folders`): edits are noticed from file events alone.
- The library cannot be reached (a symlink loop, a directory its user may not enter): the
  daemon stays up, `status` names the error and its fix, and it recovers when the cause goes.
- A read that hangs (a fake osascript that never answers): `status` says `read_stalled`, and
  SIGTERM still exits within 5 s with every acknowledged write on disk.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon.client import MusicdClient
from tests.e2e.test_music_app_e2e import TRACKS, music_app_env
from tests.support import DaemonProc, daemon_env, edit_tracks, find_track, wait_for, write_config

pytestmark = pytest.mark.timeout(90)


def _configure(d: DaemonProc, library: Path, **library_keys: Any) -> None:
    config = write_config(d.root, library)
    text = config.read_text(encoding="utf-8")
    extra = "".join(f"{k} = {v}\n" for k, v in library_keys.items())
    text = text.replace("verify_seconds = 60\n", "")
    config.write_text(text.replace("[library]\n", f"[library]\n{extra}", 1), encoding="utf-8")


def _status(d: DaemonProc) -> dict[str, Any]:
    with MusicdClient(d.socket) as client:
        status: dict[str, Any] = client.status()
    return status


def _library_status(d: DaemonProc) -> dict[str, Any]:
    library: dict[str, Any] = _status(d)["library"]
    return library


def test_an_edit_behind_a_symlinked_directory_is_noticed_without_the_safety_net() -> None:
    with daemon_env() as d:
        link = d.root / "linked"
        link.symlink_to(d.library.parent, target_is_directory=True)
        # verify_seconds of an hour: only a file event can notice the edit.
        _configure(d, link / d.library.name, verify_seconds=3600)
        d.start_built()
        assert _library_status(d)["watching"] == str(d.library.parent)
        mark = d.mark()

        def retitle(tracks: dict[str, dict[str, Any]]) -> None:
            find_track(tracks, Name="Jóga")["Name"] = "Jóga (Live)"

        edit_tracks(d.library, retitle, by_rename=True)
        event = d.wait_log("track_modified", after=mark, timeout=20)
        assert event["new"] == {"name": "Jóga (Live)"}
        assert not d.find_logs("library_changed_unnoticed")
        assert d.stop()[0] == 0


def test_a_symlink_loop_is_a_status_entry_and_recovers_when_fixed() -> None:
    with daemon_env() as d:
        loop = d.root / "loop"
        loop.symlink_to(loop)
        _configure(d, loop / d.library.name, verify_seconds=1)
        d.start()
        failed = d.wait_log("library_access_failed", timeout=20)
        assert failed["errno"] == "ELOOP"
        library = _library_status(d)
        assert library["library_error"]["errno"] == "ELOOP"
        assert "points back at itself" in library["library_error"]["hint"]
        assert library["missing"] is False
        shown = subprocess.run(
            [sys.executable, "-m", "daemon", "status", "--config", str(d.config_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert "ELOOP: a symbolic link in" in shown
        mark = d.mark()

        loop.unlink()
        loop.symlink_to(d.library.parent, target_is_directory=True)
        d.wait_log("snapshot_built", after=mark, timeout=20)
        library = wait_for(
            lambda: (s := _library_status(d))["library_error"] is None and s, timeout=10
        )
        assert library["track_count"] == 39 and library["reader_error"] is None
        assert d.stop()[0] == 0


# Root reads anything: the daemon runs as a user file permissions apply to ("nobody"), or, when
# that user cannot run this Python, as root without the capabilities that bypass them.
_NO_DAC = "-dac_override,-dac_read_search"


def _refusable_daemon() -> tuple[str | None, list[str] | None]:
    if os.geteuid() != 0:
        return None, None
    try:
        pwd.getpwnam("nobody")
        if _others_may_run(Path(sys.executable)):
            return "nobody", None
    except KeyError:
        pass
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and neither 'nobody' nor setpriv can drop its rights")
    return None, [setpriv, f"--bounding-set={_NO_DAC}", f"--inh-caps={_NO_DAC}", "--"]


@pytest.mark.slow
def test_a_directory_the_daemon_may_not_enter_is_named_with_its_fix() -> None:
    user, wrapper = _refusable_daemon()
    with daemon_env() as d:
        _configure(d, d.library, verify_seconds=1)
        if user is not None:
            account = pwd.getpwnam(user)
            for path in [d.root, *d.root.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
        d.library.parent.chmod(0o000)
        try:
            d.start(user=user, wrapper=wrapper)
            failed = d.wait_log("library_access_failed", timeout=20)
            assert failed["errno"] == "EACCES"
            error = _library_status(d)["library_error"]
            assert error["errno"] == "EACCES"
            assert "may not read" in error["hint"] and "chmod" in error["hint"]
            assert d.proc is not None and d.proc.poll() is None
            mark = d.mark()
        finally:
            d.library.parent.chmod(0o755)
        d.wait_log("snapshot_built", after=mark, timeout=20)
        wait_for(lambda: _library_status(d)["library_error"] is None, timeout=10)
        assert d.stop()[0] == 0


def _others_may_run(program: Path) -> bool:
    """Whether any user may run `program`: every directory above it searchable by others."""
    real = Path(os.path.realpath(program))
    dirs_ok = all(d.stat().st_mode & 0o001 for d in real.parents)
    return dirs_ok and bool(real.stat().st_mode & 0o001)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_hung_read_is_reported_and_does_not_hold_up_shutdown() -> None:
    with music_app_env() as env:
        d = env.daemon
        config = d.config_path.read_text(encoding="utf-8")
        d.config_path.write_text(
            config.replace(
                "[library]\n",
                "[library]\nread_timeout_seconds = 1\nosascript_timeout_seconds = 600\n",
                1,
            ),
            encoding="utf-8",
        )
        d.start(extra_env=env.fake.env())
        d.wait_log("snapshot_built", timeout=20)
        with MusicdClient(d.socket) as client:
            client.cache_put("Miles Davis", "Kind of Blue", "musicbrainz", data={"year": 1959})
        pidfile = d.root / "hang.pid"
        env.fake.configure(behaviour="hang", pidfile=str(pidfile))
        mark = d.mark()
        env.music_app_saves()
        stalled = d.wait_log("library_read_stalled", after=mark, timeout=20)
        assert stalled["seconds"] >= 1
        library = _library_status(d)
        assert library["read_stalled"]["seconds"] >= 1
        assert library["track_count"] == len(TRACKS)
        hung = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=10))

        status, seconds = d.stop(timeout=10)
        assert status == 0
        assert seconds < 5
        entries = d.cache_entries()
        assert [(e["artist"], e["album"]) for e in entries] == [("Miles Davis", "Kind of Blue")]
        # The osascript's whole process group was stopped with the daemon: nothing left behind.
        wait_for(lambda: not _pid_alive(hung), timeout=5, what="the hung osascript's child gone")
    shutil.rmtree(d.root, ignore_errors=True)
