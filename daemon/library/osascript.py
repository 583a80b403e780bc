"""Running `osascript -l JavaScript` for the Music.app reader, and what its failures mean.

osascript runs in its own session so that a timeout or a cancelled read kills its whole
process group, along with anything it started. Its failures, and the Apple Event errors the
script reports, become one-line `LibraryReadError` messages that say what to do.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from daemon.errors import LibraryReadError, describe_os_error

__all__ = ["describe_apple_event_error", "run_osascript"]

# After SIGKILL, how long to wait for the pipes to close before giving up on them.
_REAP_SECONDS: Final = 5.0


def _permission_hint(rescan_command: str) -> str:
    return (
        "macOS did not allow musicd to control Music.app (error -1743): allow it in System "
        "Settings > Privacy & Security > Automation for the app running musicd (your terminal, "
        f"or python3 for the launchd agent), then run '{rescan_command}'"
    )


def run_osascript(
    script: Path,
    args: Sequence[str],
    timeout: float,
    configured: float,
    *,
    rescan_command: str,
    on_start: Callable[[subprocess.Popen[bytes] | None], None] | None = None,
) -> bytes:
    """Run `osascript -l JavaScript script args...`; return its stdout.

    osascript runs in its own session so that on timeout the whole process group is killed,
    along with anything it started. `rescan_command` is the `musicd rescan` a person should
    run once macOS allows musicd to control Music.app (it ends that message).

    Raises:
        LibraryReadError: osascript is missing, failed, or ran longer than `timeout` seconds
            (`configured` is the timeout the message names).
    """
    command = ["osascript", "-l", "JavaScript", str(script), *args]
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise LibraryReadError(
            'osascript was not found: library.source = "music-app" works only on macOS; '
            'use library.source = "xml" with an exported Library.xml elsewhere'
        ) from None
    except OSError as err:
        raise LibraryReadError(f"cannot run osascript: {describe_os_error(err)}") from None
    if on_start is not None:
        on_start(proc)
    try:
        out, errout = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise LibraryReadError(
            f"osascript did not finish within {configured:g} s and was stopped; Music.app "
            "may be busy or waiting for you to answer a permission prompt (raise "
            "library.osascript_timeout_seconds for a very large library)"
        ) from None
    except BaseException:
        _kill(proc)
        raise
    if proc.returncode != 0:
        raise LibraryReadError(_describe_exit(proc.returncode, errout, rescan_command))
    return out


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # The session's process group id is osascript's pid (start_new_session=True).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    try:
        proc.communicate(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # Something left the group and still holds the pipes: stop waiting for it.
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait()


def _describe_exit(returncode: int, stderr: bytes, rescan_command: str) -> str:
    text = stderr.decode("utf-8", errors="replace").strip()
    last = text.splitlines()[-1].strip() if text else ""
    if "-1743" in text or "Not authorized to send Apple events" in text:
        return _permission_hint(rescan_command)
    number = _error_number(last)
    if number is not None:
        return describe_apple_event_error(number, last, rescan_command)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"osascript was killed by signal {name}"
    if not last:
        return f"osascript failed with exit status {returncode} and no message"
    return f"osascript failed with exit status {returncode}: {last[:300]}"


def _error_number(line: str) -> int | None:
    # osascript ends its error line with the number in parentheses: "... (-1728)".
    if line.endswith(")") and "(" in line:
        try:
            return int(line[line.rindex("(") + 1 : -1])
        except ValueError:
            return None
    return None


def describe_apple_event_error(number: int | None, message: str, rescan_command: str) -> str:
    if number == -1743:
        return _permission_hint(rescan_command)
    if number in (-600, -609):
        return (
            "Music.app quit while the library was being read; it is read again when Music.app "
            "changes the library"
        )
    if number == -1712:
        return (
            "Music.app did not answer in time (error -1712); it may be busy (importing, "
            "syncing): the library is read again on its next change"
        )
    shown = message.strip().replace("\n", " ")[:300]
    tail = f" (error {number})" if number is not None and f"{number}" not in shown else ""
    return f"Music.app could not be read: {shown}{tail}"
