"""logs.py: JSON lines with UTC timestamps, rotation, and a file handler that never raises."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from daemon.logs import (
    SafeRotatingFileHandler,
    configure_logging,
    json_formatter,
    log_without_config,
    stop_logging,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, raise_exceptions = root.level, logging.raiseExceptions
    watchdog_level = logging.getLogger("watchdog").level
    yield
    stop_logging()
    structlog.reset_defaults()
    root.setLevel(level)
    logging.getLogger("watchdog").setLevel(watchdog_level)
    logging.raiseExceptions = raise_exceptions


def entries(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def json_file_handler(
    path: Path, *, max_bytes: int = 1 << 20, backups: int = 1
) -> SafeRotatingFileHandler:
    handler = SafeRotatingFileHandler(path, max_bytes=max_bytes, backups=backups)
    handler.setFormatter(json_formatter())
    return handler


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("watchdog.test", level, __file__, 1, message, None, None)


def test_file_entries_are_json_lines_with_utc_iso_timestamp_level_and_context(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "logs" / "musicd.log"
    configure_logging("debug", log_file, console=False)
    log = structlog.get_logger("daemon.test")
    structlog.contextvars.bind_contextvars(request_id="r1")
    try:
        log.info("scan_finished", tracks=3, path="/a b/Library.xml")
    finally:
        structlog.contextvars.clear_contextvars()
    logging.getLogger("watchdog.observers").warning("inotify %s", "overflow")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("flush_failed", store="snapshot")
    log.info("odd_values", keys={1: "int key"}, big=2**70)
    stop_logging()

    scan, foreign, failed, odd = entries(log_file)
    for entry in (scan, foreign, failed, odd):
        stamp = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
        assert entry["timestamp"].endswith("Z")
        assert stamp.utcoffset() == UTC.utcoffset(None)
        assert abs((datetime.now(UTC) - stamp).total_seconds()) < 3600
    assert scan == {
        **scan,
        "event": "scan_finished",
        "level": "info",
        "tracks": 3,
        "path": "/a b/Library.xml",
        "request_id": "r1",
    }
    assert "logger" not in scan  # our own module names are noise in every line
    assert foreign["event"] == "inotify overflow"
    assert foreign["level"] == "warning"
    assert foreign["logger"] == "watchdog.observers"
    assert failed["level"] == "error"
    assert failed["exception"][0]["exc_type"] == "ValueError"
    assert failed["exception"][0]["exc_value"] == "boom"
    assert odd["keys"] == {"1": "int key"}
    assert str(2**70).encode() in log_file.read_bytes().splitlines()[3]  # exact, not dropped


def test_level_filters_structlog_and_stdlib_records(tmp_path: Path) -> None:
    log_file = tmp_path / "musicd.log"
    configure_logging("warning", log_file, console=False)
    log = structlog.get_logger("daemon.test")
    log.info("not_shown")
    log.debug("not_shown")
    logging.getLogger("watchdog").info("not_shown")
    log.warning("shown")
    stop_logging()
    assert [e["event"] for e in entries(log_file)] == ["shown"]


def test_console_output_is_human_readable_not_json(tmp_path: Path) -> None:
    out = tmp_path / "console.txt"
    with out.open("w") as stream:
        configure_logging("info", None, console=True, console_stream=stream)
        structlog.get_logger("daemon.test").info("daemon_started", pid=42)
        stop_logging()
    text = out.read_text()
    assert "daemon_started" in text
    assert "pid=42" in text
    assert not text.lstrip().startswith("{")


def test_rotation_keeps_backups_files_of_bounded_size(tmp_path: Path) -> None:
    log_file = tmp_path / "musicd.log"
    configure_logging("info", log_file, console=False, max_bytes=1024, backups=2)
    log = structlog.get_logger("daemon.test")
    for i in range(200):
        log.info("track_added", i=i, persistent_id=f"{i:016X}")
    stop_logging()

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "musicd.log",
        "musicd.log.1",
        "musicd.log.2",
    ]
    newest_first = [
        entries(log_file),
        entries(tmp_path / "musicd.log.1"),
        entries(tmp_path / "musicd.log.2"),
    ]
    for path in tmp_path.iterdir():
        assert path.stat().st_size <= 1024
    kept = [e["i"] for part in reversed(newest_first) for e in part]
    # What is kept is the most recent stretch, whole and in order.
    assert kept == list(range(200 - len(kept), 200))


def test_handler_resumes_after_its_directory_vanished(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_file = log_dir / "musicd.log"
    handler = json_file_handler(log_file)
    handler.handle(record("before"))
    shutil.rmtree(log_dir)
    handler.handle(record("after"))
    handler.close()
    assert [e["event"] for e in entries(log_file)] == ["after"]
    assert handler.dropped == 0


def test_unwritable_log_never_raises_and_logging_resumes_with_a_gap_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = tmp_path / "logs"
    log_file = log_dir / "musicd.log"
    handler = json_file_handler(log_file)
    handler.handle(record("before"))
    shutil.rmtree(log_dir)
    log_dir.write_text("a file where the log directory was")  # fails even for root
    handler.handle(record("lost_1"))
    handler.handle(record("lost_2"))
    assert handler.dropped == 2
    err = capsys.readouterr().err
    assert err.count("musicd: cannot write log file") == 1  # once per outage, not per record
    assert str(log_file) in err

    log_dir.unlink()
    handler.handle(record("back", logging.WARNING))
    handler.close()
    notice, back = entries(log_file)
    assert notice["event"] == "log_records_dropped"
    assert notice["count"] == 2
    assert notice["level"] == "warning"
    assert back["event"] == "back"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_full_disk_drops_records_without_raising(capsys: pytest.CaptureFixture[str]) -> None:
    handler = json_file_handler(Path("/dev/full"), max_bytes=0, backups=0)
    for i in range(3):
        handler.handle(record(f"r{i}"))
    handler.close()
    assert handler.dropped == 3
    assert "No space left on device" in capsys.readouterr().err


def test_a_line_torn_by_a_full_disk_is_not_glued_to_the_next(tmp_path: Path) -> None:
    log_file = tmp_path / "musicd.log"
    log_file.write_bytes(b'{"event":"complete","level":"info"}\n{"event":"tor')
    handler = json_file_handler(log_file)
    handler.handle(record("next"))
    handler.close()
    lines = log_file.read_bytes().splitlines()
    assert lines[1] == b'{"event":"tor'
    assert orjson.loads(lines[2])["event"] == "next"


def test_log_without_config_writes_to_the_default_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    log_without_config("config_invalid", code="config_error", error="bad key")
    (log_file,) = tmp_path.rglob("musicd.log")
    (entry,) = entries(log_file)
    assert entry["event"] == "config_invalid"
    assert entry["level"] == "error"
    assert entry["error"] == "bad key"
