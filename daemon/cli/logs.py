"""`musicd logs`: the last entries of the daemon's JSON-lines log, pretty or raw; -f follows it.

The last N entries are read backwards from the end of the file in blocks (and from the rotated
files when the current one holds fewer), never the whole file. Following works like `tail -F`:
a short sleep between checks, and when the file is replaced (rotation) or truncated the old one
is read to its end and the new one from its start. A line that is not JSON is shown as is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from daemon.cli.command import LOG_LEVELS, Subcommands, add_command, add_json_arg
from daemon.errors import EX_NOINPUT, ConfigError, DaemonError

BLOCK = 64 * 1024
POLL_SECONDS = 0.25
# A follower prints at least this often while a burst is being written.
MAX_BATCH_LINES = 500

LEVEL_RANKS = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "warn": 30,
    "error": 40,
    "exception": 40,
    "critical": 50,
    "fatal": 50,
}


class LogFileMissing(DaemonError, code="log_file_missing", exit_status=EX_NOINPUT):
    """`musicd logs` found no log file where the config says it is."""


def register(sub: Subcommands) -> None:
    """Add `musicd logs` to the CLI."""
    parser = add_command(
        sub, "logs", "show the daemon's log: the last entries, or follow it with -f", cmd_logs
    )
    add_log_arguments(parser)
    parser.add_argument(
        "--trigger",
        metavar="NAME",
        help="only the entries of this trigger: its runs and its command's output",
    )


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """-f, -n, --level and --json: how a command that shows log entries picks them."""
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new entries, across log rotation (like tail -F)",
    )
    parser.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=10,
        metavar="N",
        help="how many of the last entries to show first (default 10)",
    )
    parser.add_argument(
        "--level",
        choices=LOG_LEVELS,
        help="only entries at this level and above",
    )
    add_json_arg(parser, "print the raw JSON lines")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def cmd_logs(args: argparse.Namespace) -> int:
    return show_log(args, trigger=args.trigger)


def show_log(args: argparse.Namespace, *, trigger: str | None) -> int:
    """The log's last entries (`add_log_arguments`' options), only `trigger`'s when given."""
    path = log_file_for(args.config)
    printer = LogPrinter(
        min_level=LEVEL_RANKS[args.level] if args.level else 0,
        raw=args.json,
        colors=sys.stdout.isatty(),
        trigger=trigger,
    )
    try:
        fh: BinaryIO | None = path.open("rb")
    except FileNotFoundError:
        if not args.follow:
            raise LogFileMissing(
                f"no log file at {path} yet: musicd has not run with this config "
                "(or log.file points elsewhere; pass the daemon's --config)"
            ) from None
        print(f"musicd: waiting for {path} to appear", file=sys.stderr, flush=True)
        fh = None
    except OSError as err:
        raise LogFileMissing(f"cannot read {path}: {err.strerror}") from None

    offset = 0
    if fh is not None:
        end = os.fstat(fh.fileno()).st_size
        lines, partial = last_lines(path, fh, end, args.lines, printer.wanted)
        # A line still being written is finished by the follower, not cut in half here.
        if args.follow:
            offset = end - len(partial)
        elif partial.strip() and printer.wanted(partial) and args.lines:
            lines = [*lines[1:], partial] if len(lines) >= args.lines else [*lines, partial]
        printer.lines(lines)
    if not args.follow:
        if fh is not None:
            fh.close()
        return 0
    follower = Follower(path, fh, offset)
    while True:
        batch = follower.read_available()
        if batch:
            printer.lines(batch)
        else:
            time.sleep(POLL_SECONDS)


def log_file_for(config_arg: str | None) -> Path:
    """The log file of the daemon that uses this config (the default one if it is broken)."""
    from daemon.config import load_config
    from daemon.paths import default_log_file

    try:
        return load_config(config_arg).log.file
    except ConfigError as err:
        # `musicd run` logs its config_invalid line to the default file in this case.
        fallback = default_log_file()
        print(
            f"musicd: {err}\nmusicd: showing {fallback}, where musicd run reports a broken config",
            file=sys.stderr,
            flush=True,
        )
        return fallback


def lines_backwards(fh: BinaryIO, end: int) -> Iterator[bytes]:
    """The lines of fh[:end], last first. The first one yielded is what follows the last newline
    (empty when the data ends with one)."""
    pos = end
    head = b""
    while pos > 0:
        step = min(BLOCK, pos)
        pos -= step
        fh.seek(pos)
        chunk = fh.read(step) + head
        pieces = chunk.split(b"\n")
        head = pieces[0]
        yield from reversed(pieces[1:])
    yield head


def last_lines(
    path: Path, fh: BinaryIO, end: int, count: int, wanted: Callable[[bytes], bool]
) -> tuple[list[bytes], bytes]:
    """The last `count` complete wanted lines, oldest first, continuing into path.1, path.2, …
    when the current file has fewer; and the unfinished last line of the current file."""
    backwards = lines_backwards(fh, end)
    partial = next(backwards, b"")
    found = _take(backwards, count, wanted)
    rotated = 1
    while len(found) < count:
        older = path.with_name(f"{path.name}.{rotated}")
        try:
            with older.open("rb") as old:
                size = os.fstat(old.fileno()).st_size
                found += _take(lines_backwards(old, size), count - len(found), wanted)
        except FileNotFoundError:
            break
        rotated += 1
    found.reverse()
    return found, partial


def _take(lines: Iterator[bytes], count: int, wanted: Callable[[bytes], bool]) -> list[bytes]:
    found: list[bytes] = []
    if count <= 0:
        return found
    for line in lines:
        if line.strip() and wanted(line):
            found.append(line)
            if len(found) >= count:
                break
    return found


class Follower:
    """Reads the lines appended to `path`, following it when it is rotated or truncated."""

    def __init__(self, path: Path, fh: BinaryIO | None, offset: int) -> None:
        self.path = path
        self.fh = fh
        self.buf = b""
        if fh is not None:
            fh.seek(offset)

    def read_available(self) -> list[bytes]:
        """Every complete line available now (possibly none); never waits."""
        out: list[bytes] = []
        while len(out) < MAX_BATCH_LINES:
            if self.fh is None:
                try:
                    self.fh = self.path.open("rb")
                except FileNotFoundError:
                    return out
                self.buf = b""
            if self._read_into(out):
                continue
            try:
                on_disk = os.stat(self.path)
            except FileNotFoundError:
                on_disk = None
            ours = os.fstat(self.fh.fileno())
            if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (
                ours.st_dev,
                ours.st_ino,
            ):
                if on_disk.st_size < self.fh.tell():
                    self.fh.seek(0)  # truncated in place: start over
                    self.buf = b""
                    continue
                return out
            # Replaced or removed: the writer is done with the old file (it closes before it
            # renames), so read what it wrote last, then move on to the new file.
            while self._read_into(out):
                pass
            if self.buf:
                out.append(self.buf)
            self.fh.close()
            self.fh = None
            if on_disk is None:
                return out
        return out

    def _read_into(self, out: list[bytes]) -> bool:
        assert self.fh is not None
        chunk = self.fh.read(BLOCK)
        if not chunk:
            return False
        *complete, self.buf = (self.buf + chunk).split(b"\n")
        out.extend(complete)
        return True


class LogPrinter:
    """Prints log entries at or above a level (and of one trigger, when given): pretty for
    people, as they are with --json."""

    def __init__(
        self, *, min_level: int, raw: bool, colors: bool, trigger: str | None = None
    ) -> None:
        self.min_level = min_level
        self.raw = raw
        self.trigger = trigger
        self._renderer: Callable[[Any, str, dict[str, Any]], str] | None = None
        self._colors = colors

    def wanted(self, line: bytes) -> bool:
        if not self.min_level and self.trigger is None:
            return True
        entry = _parse(line)
        if entry is None:
            # Not ours to judge: show it, unless only one trigger's entries are asked for.
            return self.trigger is None
        if self.trigger is not None and entry.get("trigger") != self.trigger:
            return False
        rank = LEVEL_RANKS.get(str(entry.get("level", "")).lower())
        return rank is None or rank >= self.min_level

    def lines(self, lines: list[bytes]) -> None:
        for line in lines:
            if not line.strip() or not self.wanted(line):
                continue
            print(self.format(line))
        sys.stdout.flush()

    def format(self, line: bytes) -> str:
        text = line.decode("utf-8", "replace").rstrip("\r")
        entry = None if self.raw else _parse(line)
        if entry is None:
            return text
        if self._renderer is None:
            import structlog.dev

            self._renderer = structlog.dev.ConsoleRenderer(colors=self._colors, sort_keys=False)
        if "exception" in entry:
            entry["exception"] = format_exception(entry["exception"])
        return self._renderer(None, str(entry.get("level", "")), entry)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) and "event" in entry else None


def format_exception(exc: Any) -> str:
    """Python's own traceback layout for structlog's dict tracebacks (causes first)."""
    if not isinstance(exc, list):
        return str(exc)
    parts: list[str] = []
    prev_is_cause = False
    for i, stack in enumerate(reversed(exc)):
        if not isinstance(stack, dict):
            continue
        if i:
            parts.append(
                "\nThe above exception was the direct cause of the following exception:\n"
                if prev_is_cause
                else "\nDuring handling of the above exception, another exception occurred:\n"
            )
        parts.append("Traceback (most recent call last):")
        parts.extend(
            f'  File "{frame.get("filename")}", line {frame.get("lineno")}, in {frame.get("name")}'
            for frame in stack.get("frames") or ()
        )
        parts.append(f"{stack.get('exc_type')}: {stack.get('exc_value')}")
        prev_is_cause = bool(stack.get("is_cause"))
    return "\n".join(parts)
