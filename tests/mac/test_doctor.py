"""`musicd doctor`: every check, healthy and broken."""

from __future__ import annotations

import os
import plistlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.config import load_config
from daemon.mac import doctor, doctor_library
from daemon.mac.doctor import run_checks
from daemon.mac.doctor_check import Check
from daemon.mac.launchd import LABEL
from tests.fakes import FakeOsascript
from tests.mac.test_launchd import FAKE_LAUNCHCTL, TARGET, UID
from tests.support import (
    REPO,
    daemon_env,
    sample_library_bytes,
    short_tempdir,
    write_config,
)

RESCAN = "musicd rescan"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def root() -> Iterator[Path]:
    """Where the config, state, socket and log go: a short path, for the socket's sake."""
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def setup(tmp_path: Path, root: Path) -> tuple[Path, Path]:
    """(config, library): a healthy XML setup, nothing running."""
    library = tmp_path / "lib" / "Library.xml"
    library.parent.mkdir()
    library.write_bytes(sample_library_bytes())
    config = write_config(root, library)
    return config, library


def run(config: Path, platform: str = "linux") -> dict[str, Check]:
    return by_name(run_checks(str(config), rescan_command=RESCAN, platform=platform))


# -- config --------------------------------------------------------------------------------------


def test_a_healthy_setup_passes_every_check_but_the_daemon(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    checks = run_checks(str(config), rescan_command=RESCAN, platform="linux")
    assert [c.name for c in checks] == [
        "config",
        "library_path",
        "library_xml",
        "state_dir",
        "database",
        "daemon",
        "launchd",
        "log_file",
    ]
    statuses = {c.name: c.status for c in checks}
    assert statuses.pop("daemon") == "warn"
    assert statuses.pop("launchd") == "skip"
    assert set(statuses.values()) == {"ok"}
    assert "39 tracks; last written" in by_name(checks)["library_xml"].message
    assert not doctor.failed(checks)


def test_a_broken_config_stops_after_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[library\n", encoding="utf-8")
    checks = run_checks(str(config), rescan_command=RESCAN, platform="linux")
    assert [(c.name, c.status) for c in checks] == [("config", "fail")]
    assert "not valid TOML" in checks[0].message and checks[0].fix


# -- library -------------------------------------------------------------------------------------


def test_a_missing_library_says_how_to_share_the_xml(setup: tuple[Path, Path]) -> None:
    config, library = setup
    library.unlink()
    check = run(config)["library_path"]
    assert check.status == "fail" and "does not exist" in check.message
    assert check.fix is not None and "Share Library XML" in check.fix


def test_a_directory_is_the_wrong_kind_for_xml(setup: tuple[Path, Path]) -> None:
    config, library = setup
    library.unlink()
    library.mkdir()
    check = run(config)["library_path"]
    assert check.status == "fail" and "not a regular file" in check.message


def test_a_symlink_loop_is_named_with_its_fix(setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, library = setup
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    text = config.read_text(encoding="utf-8").replace(str(library), str(loop / "Library.xml"))
    config.write_text(text, encoding="utf-8")
    check = run(config)["library_path"]
    assert check.status == "fail" and "ELOOP" in check.message
    assert check.fix is not None and "points back at itself" in check.fix


def test_a_truncated_xml_fails_to_parse(setup: tuple[Path, Path]) -> None:
    config, library = setup
    data = library.read_bytes()
    library.write_bytes(data[: len(data) // 2])
    check = run(config)["library_xml"]
    assert check.status == "fail" and "line" in check.message


def test_an_xml_not_written_for_long_is_a_warning(setup: tuple[Path, Path]) -> None:
    config, library = setup
    old = library.stat().st_mtime - 90 * 86400
    os.utime(library, (old, old))
    check = run(config)["library_xml"]
    assert check.status == "warn" and "90 days ago" in check.message


def test_a_read_that_hangs_is_reported_not_waited_for(
    setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, library = setup
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)
    text = config.read_text(encoding="utf-8").replace(str(library), str(fifo))
    config.write_text(text, encoding="utf-8")
    monkeypatch.setattr(doctor_library, "READ_SECONDS", 0.3)
    # A FIFO is not a regular file: caught before any read. A regular file whose read hangs
    # is what the deadline is for; simulate one by a reader that never returns.
    assert run(config)["library_path"].status == "fail"
    text = config.read_text(encoding="utf-8").replace(str(fifo), str(library))
    config.write_text(text, encoding="utf-8")
    never = threading.Event()
    monkeypatch.setattr(doctor_library, "_read_some", lambda path: never.wait())
    check = run(config)["library_path"]
    assert check.status == "fail" and "did not finish" in check.message


def music_app_config(tmp_path: Path, root: Path) -> Path:
    bundle = tmp_path / "Music Library.musiclibrary"
    bundle.mkdir()
    (bundle / "Library.musicdb").write_bytes(b"hfma")
    config = write_config(root, bundle)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[library]\n", '[library]\nsource = "music-app"\n', 1))
    return config


def test_music_app_without_osascript_fails(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = music_app_config(tmp_path, root)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    check = run(config)["osascript"]
    assert check.status == "fail" and check.fix is not None and "macOS" in check.fix


def test_music_app_answering_and_not_running(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = music_app_config(tmp_path, root)
    fake = FakeOsascript(tmp_path)
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    from tests.library.test_music_app import TRACKS

    fake.serve(TRACKS)
    checks = run(config)
    assert checks["osascript"].status == "ok"
    assert checks["music_app"] == Check(
        "music_app", "ok", f"Music.app answered: {len(TRACKS)} tracks"
    )
    fake.serve(TRACKS, running=False)
    check = run(config)["music_app"]
    assert check.status == "fail" and "Music.app is not running" in check.message


def test_a_file_where_the_bundle_should_be(tmp_path: Path, root: Path) -> None:
    config = music_app_config(tmp_path, root)
    bundle = tmp_path / "Music Library.musiclibrary"
    (bundle / "Library.musicdb").unlink()
    bundle.rmdir()
    bundle.write_bytes(b"")
    check = run(config)["library_path"]
    assert check.status == "fail" and "not a directory" in check.message


# -- state ---------------------------------------------------------------------------------------


def test_state_dir_that_is_a_file_fails(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    cfg = load_config(config)
    cfg.state.dir.write_bytes(b"")
    check = run(config)["state_dir"]
    assert check.status == "fail" and "not a directory" in check.message


def test_database_sound_and_not_a_database(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    cfg = load_config(config)
    cfg.state.dir.mkdir()
    db = cfg.state.dir / "musicd.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    check = run(config)["database"]
    assert check == Check("database", "ok", f"{db} passed quick_check")
    db.write_bytes(b"this is not sqlite" * 100)
    check = run(config)["database"]
    assert check.status == "fail" and "not a database" in check.message
    assert check.fix is not None and "move it aside" in check.fix


def test_log_file_that_cannot_be_created(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    cfg = load_config(config)
    blocker = cfg.log.file.parent / "blocker"
    blocker.write_bytes(b"")
    text = config.read_text(encoding="utf-8").replace(
        str(cfg.log.file), str(blocker / "logs" / "musicd.log")
    )
    config.write_text(text, encoding="utf-8")
    check = run(config)["log_file"]
    assert check.status == "fail" and "cannot be created" in check.message


# -- the running daemon --------------------------------------------------------------------------


def test_running_daemon_with_this_config_and_with_another() -> None:
    with daemon_env() as d:
        d.start_built()
        check = run(d.config_path)["daemon"]
        assert check.status == "ok" and "with this config" in check.message
        other = d.root / "other.toml"
        text = d.config_path.read_text(encoding="utf-8")
        other.write_text(text.replace(str(d.state_dir), str(d.root / "state2")))
        check = run(other)["daemon"]
        assert check.status == "fail" and "not this config's" in check.message
        assert d.stop()[0] == 0


def test_running_daemon_that_cannot_read_the_library() -> None:
    with daemon_env() as d:
        loop = d.root / "loop"
        loop.symlink_to(loop)
        write_config(d.root, loop / "Library.xml")
        d.start()
        d.wait_log("library_access_failed", timeout=20)
        checks = run(d.config_path)
        assert checks["daemon"].status == "ok"
        assert checks["daemon_library"].status == "fail"
        assert "ELOOP" in checks["daemon_library"].message
        assert d.stop()[0] == 0


# -- launchd (macOS checks, run here with platform="darwin" and a fake launchctl) ----------------


@pytest.fixture
def mac_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    state = tmp_path / "launchctl-state"
    state.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "launchctl"
    fake.write_text(
        FAKE_LAUNCHCTL.format(
            python=sys.executable, state=str(state), label=LABEL, uid=UID, target=TARGET
        )
    )
    fake.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return home


def install_plist(home: Path, program: str, *, loaded: bool) -> None:
    agents = home / "Library" / "LaunchAgents"
    agents.mkdir(parents=True, exist_ok=True)
    plist: dict[str, Any] = {"Label": LABEL, "ProgramArguments": [program, "run"]}
    path = agents / f"{LABEL}.plist"
    path.write_bytes(plistlib.dumps(plist))
    state = home.parent / "launchctl-state" / "loaded"
    if loaded:
        state.write_text(str(path))
    elif state.exists():
        state.unlink()


def launchd_checks() -> dict[str, Check]:
    return by_name(list(doctor.check_launchd("darwin")))


def test_launchd_not_installed_is_a_warning(mac_home: Path) -> None:
    check = launchd_checks()["launchd"]
    assert check.status == "warn" and check.fix == "'musicd launchd install'"


def test_launchd_installed_loaded_and_healthy(mac_home: Path) -> None:
    install_plist(mac_home, sys.executable, loaded=True)
    checks = launchd_checks()
    assert checks["launchd"].status == "ok"
    assert checks["launchd_program"].status == "ok"


def test_launchd_installed_but_not_loaded_names_login_items(mac_home: Path) -> None:
    install_plist(mac_home, sys.executable, loaded=False)
    check = launchd_checks()["launchd"]
    assert check.status == "warn" and check.fix is not None and "Login Items" in check.fix


def test_launchd_program_gone(mac_home: Path) -> None:
    install_plist(mac_home, str(mac_home / "old-venv" / "bin" / "musicd"), loaded=True)
    check = launchd_checks()["launchd_program"]
    assert check.status == "fail" and "gone" in check.message


def test_launchd_program_in_documents(mac_home: Path) -> None:
    venv = mac_home / "Documents" / "venv" / "bin"
    venv.mkdir(parents=True)
    python = venv / "python3"
    python.symlink_to(sys.executable)
    install_plist(mac_home, str(python), loaded=True)
    check = launchd_checks()["launchd_program"]
    assert check.status == "fail" and "~/Documents" in check.message
    assert check.fix is not None and "move the virtualenv" in check.fix


def test_privacy_warning_for_a_library_in_a_guarded_folder(mac_home: Path, root: Path) -> None:
    library = mac_home / "Music" / "Music" / "Library.xml"
    library.parent.mkdir(parents=True)
    library.write_bytes(sample_library_bytes())
    config = write_config(root, library)
    checks = run(config, platform="darwin")
    assert checks["privacy"].status == "warn"
    assert checks["privacy"].fix is not None
    assert os.path.realpath(sys.executable) in checks["privacy"].fix


# -- the command ---------------------------------------------------------------------------------


def musicd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MUSICD_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_the_command_prints_one_line_per_check_and_exits_by_failure(
    setup: tuple[Path, Path],
) -> None:
    config, library = setup
    done = musicd("doctor", "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok   config: loaded ")
    assert any(line.startswith("skip launchd: not macOS") for line in lines)
    library.unlink()
    done = musicd("doctor", "--config", str(config), "--json")
    assert done.returncode == 1
    checks = orjson.loads(done.stdout)
    failed = [c for c in checks if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["library_path"]
    assert set(checks[0]) == {"name", "status", "message", "fix"}
