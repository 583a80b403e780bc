"""One run of a trigger's command: started without a shell in a process group of its own, its
output logged line by line within a bound, stopped as a group on timeout or shutdown.

The command's process group is what gets the signals, not the command alone: a script that
started helpers (a shell pipeline, a Python pool) leaves nothing running after a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import anyio
import orjson
import structlog
from anyio.abc import ByteReceiveStream, Process

log = structlog.get_logger(__name__)

# After SIGTERM on timeout, the group gets this long before SIGKILL.
KILL_GRACE_SECONDS: Final = 5.0
# At shutdown the daemon's whole budget is 5 s, so a running command gets less.
SHUTDOWN_GRACE_SECONDS: Final = 1.0
# Output lines logged per run (stdout and stderr together); the rest are counted only.
MAX_OUTPUT_LINES: Final = 200
# A longer line is cut to this many characters in the log.
MAX_LINE_CHARS: Final = 2000
# Once the command has exited, a helper it left holding its stdout may keep the pipe open:
# its output is read this much longer, then left.
OUTPUT_AFTER_EXIT_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended."""

    # The exit status; negative for a signal (-9: SIGKILL); None when it never started.
    exit_status: int | None
    timed_out: bool
    # Why it could not be started (None: it was).
    error: str | None
    duration_seconds: float
    dropped_lines: int

    @property
    def succeeded(self) -> bool:
        return self.exit_status == 0 and not self.timed_out


def stdin_file(events: Sequence[dict[str, Any]]) -> IO[bytes]:
    """The events as NDJSON in an unlinked temp file: the command reads it at its own pace."""
    # Closed by the caller once the run is over.
    out = tempfile.TemporaryFile()
    for event in events:
        out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    out.seek(0)
    return out


def command_env(
    trigger: str,
    socket: Path,
    cursor_from: str,
    cursor_to: str,
    events: int,
    *,
    resync: bool,
) -> dict[str, str]:
    """The command's whole environment: nothing else of the daemon's is passed on."""
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    for key in ("HOME", "LANG"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(
        MUSICD_SOCKET=str(socket),
        MUSICD_TRIGGER=trigger,
        MUSICD_CURSOR_FROM=cursor_from,
        MUSICD_CURSOR_TO=cursor_to,
        MUSICD_EVENTS=str(events),
    )
    if resync:
        env["MUSICD_RESYNC"] = "1"
    return env


class _OutputBudget:
    """What one run may still log of its output."""

    def __init__(self) -> None:
        self.left = MAX_OUTPUT_LINES
        self.dropped = 0

    def take(self) -> bool:
        """Whether one more line may be logged (a line that may not is counted)."""
        if self.left <= 0:
            self.dropped += 1
            return False
        self.left -= 1
        return True


async def run_command(
    trigger: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    stdin: IO[Any],
    timeout_seconds: float,
) -> Outcome:
    """Run `argv` with `stdin` (an open file) until it exits or `timeout_seconds` pass.

    On timeout its process group gets SIGTERM, then SIGKILL after `KILL_GRACE_SECONDS`. When
    the caller is cancelled (daemon shutdown) the group gets SIGTERM, SIGKILL after
    `SHUTDOWN_GRACE_SECONDS`, and the cancellation goes on.
    """
    started = time.monotonic()
    try:
        process = await anyio.open_process(
            list(argv),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as err:
        return Outcome(None, False, f"{argv[0]}: {err.strerror or err}", 0.0, 0)
    budget = _OutputBudget()
    timed_out = False
    try:
        async with anyio.create_task_group() as readers:
            assert process.stdout is not None and process.stderr is not None
            ends = (anyio.Event(), anyio.Event())
            readers.start_soon(_log_lines, trigger, "stdout", process.stdout, budget, ends[0])
            readers.start_soon(_log_lines, trigger, "stderr", process.stderr, budget, ends[1])
            with anyio.move_on_after(timeout_seconds) as waiting:
                await process.wait()
            if waiting.cancelled_caught:
                timed_out = True
                await stop_group(process, KILL_GRACE_SECONDS)
            # The readers end at the pipes' end; a helper left running must not hold the run.
            with anyio.move_on_after(OUTPUT_AFTER_EXIT_SECONDS):
                for end in ends:
                    await end.wait()
            readers.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await stop_group(process, SHUTDOWN_GRACE_SECONDS)
            await _close(process)
        raise
    with anyio.CancelScope(shield=True):
        await _close(process)
    return Outcome(
        process.returncode,
        timed_out,
        None,
        time.monotonic() - started,
        budget.dropped,
    )


async def stop_group(process: Process, grace_seconds: float) -> None:
    """SIGTERM to the process's group, SIGKILL to it after `grace_seconds` if the command is
    still running then; returns once the command has exited."""
    _signal_group(process.pid, signal.SIGTERM)
    with anyio.move_on_after(grace_seconds):
        await process.wait()
    # Whatever is left of the group (the command, or helpers that outlived it) goes now.
    _signal_group(process.pid, signal.SIGKILL)
    with anyio.move_on_after(grace_seconds):
        await process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    # The group id is the command's pid (start_new_session); it cannot be reused while any
    # member of the group is alive, and when none is, killpg says so.
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


async def _close(process: Process) -> None:
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()
    with anyio.move_on_after(SHUTDOWN_GRACE_SECONDS):
        await process.wait()


async def _log_lines(
    trigger: str,
    stream_name: str,
    stream: ByteReceiveStream,
    budget: _OutputBudget,
    end: anyio.Event,
) -> None:
    """Log each line of `stream` as `trigger_output`, within the run's budget; set `end` at
    the stream's end."""
    pending = b""
    try:
        async for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _log_line(trigger, stream_name, line, budget)
            if len(pending) > MAX_LINE_CHARS * 4:
                # A line that never ends is logged in pieces rather than held whole.
                _log_line(trigger, stream_name, pending, budget)
                pending = b""
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass
    if pending:
        _log_line(trigger, stream_name, pending, budget)
    end.set()


def _log_line(trigger: str, stream_name: str, line: bytes, budget: _OutputBudget) -> None:
    if not budget.take():
        return
    text = line.decode(errors="replace").rstrip("\r")
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS] + "..."
    log.info("trigger_output", trigger=trigger, stream=stream_name, line=text)
