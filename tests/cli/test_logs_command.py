"""`musicd logs`: last entries, level filter, raw output, and -f across rotation."""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from daemon.cli import main
from daemon.cli.logs import BLOCK, last_lines

TIMEOUT = 15.0


def entry(event: str, level: str = "info", **context: Any) -> bytes:
    return (
        orjson.dumps(
            {**context, "event": event, "level": level, "timestamp": "2025-01-02T03:04:05.678901Z"}
        )
        + b"\n"
    )


def append(path: Path, *lines: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(b"".join(lines))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[log]\nfile = "{tmp_path / "logs" / "musicd.log"}"\n', encoding="utf-8")
    (tmp_path / "logs").mkdir()
    return path


def log_file(config: Path) -> Path:
    return config.parent / "logs" / "musicd.log"


def run_logs(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["logs", "--config", str(config), *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_last_n_entries_pretty_with_time_level_event_and_context(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append(log_file(config), *(entry("track_added", i=i, name="Kind of Blue") for i in range(30)))
    lines = run_logs(config, "-n", "3", capsys=capsys)
    assert len(lines) == 3
    assert [ln.split("i=")[1].split()[0] for ln in lines] == ["27", "28", "29"]
    assert "2025-01-02T03:04:05.678901Z" in lines[0]
    assert "info" in lines[0]
    assert "track_added" in lines[0]
    assert "name='Kind of Blue'" in lines[0]


def test_json_prints_the_raw_lines(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = [entry("a", x=1), entry("b", y="z")]
    append(log_file(config), *raw)
    assert run_logs(config, "--json", capsys=capsys) == [r.decode().rstrip("\n") for r in raw]


def test_level_warning_shows_warning_and_above(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append(
        log_file(config),
        entry("d", "debug"),
        entry("i", "info"),
        entry("w", "warning"),
        entry("e", "error"),
        entry("i2", "info"),
    )
    lines = run_logs(config, "--level", "warning", "--json", capsys=capsys)
    assert [orjson.loads(ln)["event"] for ln in lines] == ["w", "e"]


def test_one_triggers_entries_by_logs_trigger_and_by_triggers_log(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append(
        log_file(config),
        entry("trigger_output", trigger="genre-updater", stream="stdout", line="tagged 3"),
        entry("track_modified", seq=7),
        b"not json\n",
        entry("trigger_output", trigger="year-updater", stream="stdout", line="other"),
        entry("trigger_finished", trigger="genre-updater", exit_status=0, events=3),
    )
    by_logs = run_logs(config, "--trigger", "genre-updater", "--json", capsys=capsys)
    assert [orjson.loads(line)["event"] for line in by_logs] == [
        "trigger_output",
        "trigger_finished",
    ]
    assert all(orjson.loads(line)["trigger"] == "genre-updater" for line in by_logs)
    argv = ["triggers", "log", "genre-updater", "--config", str(config), "--json", "-n", "1"]
    assert main(argv) == 0
    by_triggers = capsys.readouterr().out.splitlines()
    assert by_triggers == by_logs[-1:]


def test_a_line_that_is_not_json_is_shown_as_is(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append(
        log_file(config),
        entry("before"),
        b"Traceback (most recent call last): {oops\n",
        b"\xff\xfe not utf-8\n",
        entry("after"),
    )
    lines = run_logs(config, capsys=capsys)
    assert len(lines) == 4
    assert lines[1] == "Traceback (most recent call last): {oops"
    assert "not utf-8" in lines[2]
    assert "after" in lines[3]


def test_exceptions_are_shown_as_a_traceback(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = [{"filename": "/x/app.py", "lineno": 7, "name": "flush"}]
    append(
        log_file(config),
        entry(
            "flush_failed",
            "error",
            exception=[
                {
                    "exc_type": "OSError",
                    "exc_value": "disk full",
                    "is_cause": False,
                    "frames": frames,
                }
            ],
        ),
    )
    text = "\n".join(run_logs(config, capsys=capsys))
    assert 'File "/x/app.py", line 7, in flush' in text
    assert "OSError: disk full" in text


def test_last_n_continues_into_the_rotated_file(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    current = log_file(config)
    append(current.with_name("musicd.log.2"), *(entry("older", i=i) for i in range(3)))
    append(current.with_name("musicd.log.1"), *(entry("old", i=i) for i in range(3)))
    append(current, entry("new", i=0), entry("new", i=1))
    lines = run_logs(config, "-n", "6", "--json", capsys=capsys)
    got = [(e["event"], e["i"]) for e in map(orjson.loads, lines)]
    assert got == [("older", 2), ("old", 0), ("old", 1), ("old", 2), ("new", 0), ("new", 1)]


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_last_lines_of_a_big_file_read_only_its_end(tmp_path: Path) -> None:
    data = b"".join(entry("track_added", i=i) for i in range(100_000))  # ~9 MB
    fh = CountingReader(data)
    lines, partial = last_lines(tmp_path / "unused.log", fh, len(data), 10, lambda _: True)
    assert [orjson.loads(ln)["i"] for ln in lines] == list(range(99_990, 100_000))
    assert partial == b""
    assert fh.bytes_read <= BLOCK


def test_missing_log_file_is_a_clear_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", "--config", str(config)]) == 66
    assert f"no log file at {log_file(config)}" in capsys.readouterr().err


# --- following, as a real subprocess ---------------------------------------------------------


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MUSICD_CONFIG", "XDG_STATE_HOME", "XDG_CONFIG_HOME")
    }
    return {**env, "HOME": str(home)}


class Follower:
    """`musicd logs -f` in a subprocess; its stdout lines arrive on a queue."""

    def __init__(self, config: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "logs", "-f", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(config.parent),
            cwd=config.parent,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            threading.Thread(target=self._pump, args=(stream, into), daemon=True).start()

    @staticmethod
    def _pump(stream: IO[bytes] | None, into: queue.Queue[str]) -> None:
        assert stream is not None
        for raw in stream:
            into.put(raw.decode(errors="replace").rstrip("\n"))

    def expect(self, *wanted: str, stderr: bool = False) -> None:
        """Wait for the next lines (of stdout, or stderr) to contain `wanted`, in order."""
        deadline = time.monotonic() + TIMEOUT
        source = self.errors if stderr else self.lines
        for text in wanted:
            try:
                line = source.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line with {text!r} within {TIMEOUT}s; alive={self.proc.poll() is None}"
                ) from None
            assert text in line

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def test_follow_keeps_following_after_the_file_is_rotated(config: Path) -> None:
    current = log_file(config)
    append(current, entry("one"), entry("two"), entry("three"))
    follower = Follower(config, "-n", "2")
    try:
        follower.expect("two", "three")
        append(current, entry("four"))
        follower.expect("four")
        # Rotate as the daemon's handler does: rename to .1, start a new file.
        append(current, entry("last_before_rotation"))
        current.rename(current.with_name("musicd.log.1"))
        append(current, entry("first_after_rotation"))
        follower.expect("last_before_rotation", "first_after_rotation")
        append(current, entry("five"))
        follower.expect("five")
        assert follower.proc.poll() is None
    finally:
        follower.stop()


def test_follow_is_not_stopped_by_a_corrupt_line(config: Path) -> None:
    current = log_file(config)
    append(current, entry("start"))
    follower = Follower(config)
    try:
        follower.expect("start")
        append(
            current,
            b'{"event": "torn by a full di\n',
            b"\x00\x01 binary junk\n",
            entry("still_following"),
        )
        follower.expect('{"event": "torn by a full di', "binary junk", "still_following")
        # Half a line is held back until its end arrives.
        append(current, entry("split")[:10])
        append(current, entry("split")[10:], entry("after_split"))
        follower.expect("split", "after_split")
        assert follower.proc.poll() is None
    finally:
        follower.stop()


def test_follow_waits_for_a_log_file_that_does_not_exist_yet(config: Path) -> None:
    follower = Follower(config)
    try:
        follower.expect(f"waiting for {log_file(config)} to appear", stderr=True)
        # It waits: still running, nothing printed yet.
        assert follower.proc.poll() is None and follower.lines.empty()
        append(log_file(config), entry("daemon_started"))
        follower.expect("daemon_started")
        assert follower.proc.poll() is None  # and goes on following
    finally:
        follower.stop()


def test_run_with_a_broken_config_leaves_a_config_invalid_line_each_time(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "config.toml"
    broken.write_text("[library]\nsettle_secs = 2\n", encoding="utf-8")
    env = clean_env(tmp_path)
    for _ in range(2):  # as launchd restarts it
        run = subprocess.run(
            [sys.executable, "-m", "daemon", "run", "--config", str(broken)],
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=TIMEOUT,
        )
        assert run.returncode == 78
        assert run.stderr.decode().count("\n") == 1
        assert "settle_secs" in run.stderr.decode()
    shown = subprocess.run(
        [sys.executable, "-m", "daemon", "logs", "--json", "--config", str(broken)],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=TIMEOUT,
    )
    assert shown.returncode == 0
    events = [orjson.loads(line) for line in shown.stdout.splitlines()]
    assert [e["event"] for e in events] == ["config_invalid", "config_invalid"]
    assert "settle_secs" in events[0]["error"]
    assert events[0]["config"] == str(broken)
    assert "settle_secs" in shown.stderr.decode()  # and why it shows the default log file
