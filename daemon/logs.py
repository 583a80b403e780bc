"""configure_logging(): structlog to a rotating JSON-lines file and, on a terminal, the console.

Records go through a queue to a listener thread, so a slow or full disk never blocks the event
loop, and a failing handler never raises into the daemon. watchdog's stdlib records take the
same path through ProcessorFormatter. `musicd logs` (daemon/cli/logs.py) is the reading side.
"""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
import queue
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
import structlog.tracebacks
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass(frozen=True, slots=True)
class _Pipeline:
    """The running pipeline: the root logger's queue handler and the thread that drains it."""

    queue_handler: logging.Handler
    listener: logging.handlers.QueueListener


# One per process, as the root logger and structlog's configuration are. Nothing is set up at
# import: configure_logging() starts it, stop_logging() ends it (and the daemon registers
# stop_logging for interpreter exit at start-up, in daemon/process.py).
_pipeline: _Pipeline | None = None


def _json_dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    try:
        return orjson.dumps(obj, default=default or str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        # orjson refuses a few things the stdlib accepts (ints over 64 bits, odd dict keys):
        # a log line with a clumsier value beats a lost log line.
        return json.dumps(obj, default=repr, ensure_ascii=False)


def _capture_exc_info(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Rendering happens on the listener thread, where sys.exc_info() is empty: pin it here.
    if event_dict.get("exc_info") is True:
        event_dict["exc_info"] = sys.exc_info()
    return event_dict


def _record_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # A foreign record is formatted later on the listener thread: stamp it with its own time.
    record = event_dict.get("_record")
    created = record.created if isinstance(record, logging.LogRecord) else None
    moment = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
    event_dict["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    return event_dict


def _shared_processors() -> list[Processor]:
    """Run by structlog in the calling thread, before the record is queued."""
    return [
        _capture_exc_info,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _foreign_processors() -> list[Processor]:
    """Run on the listener thread for stdlib records (watchdog's, and our own notices)."""
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _record_timestamp,
    ]


def _drop_logger_name_for_ours(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Our own loggers are named after modules; keep the name only for foreign (stdlib) records.
    name = event_dict.get("logger")
    if isinstance(name, str) and name.startswith("daemon"):
        event_dict.pop("logger")
    return event_dict


def json_formatter() -> logging.Formatter:
    """The log file's formatter: one JSON object per line."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_foreign_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_logger_name_for_ours,
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(serializer=_json_dumps),
        ],
    )


# Records waiting for the listener thread; beyond this they are dropped and counted (a disk
# that stalls, a flood of lines) instead of growing the daemon's memory without a bound.
MAX_QUEUED_RECORDS = 10_000


class _PassThroughQueueHandler(logging.handlers.QueueHandler):
    """Hands the record over untouched (ProcessorFormatter needs the original event dict), or
    counts it as dropped when the queue is full; the next record that fits is preceded by a
    `log_records_dropped` line with the count."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        # Called under the handler's lock: `dropped` needs no lock of its own.
        try:
            if self.dropped:
                self.queue.put_nowait(_dropped_notice(self.dropped))
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


def _dropped_notice(count: int, reason: str = "queue_full") -> logging.LogRecord:
    notice = logging.LogRecord(
        __name__, logging.WARNING, __file__, 0, "log_records_dropped", None, None
    )
    notice.__dict__["count"] = count
    notice.__dict__["reason"] = reason
    return notice


class _Listener(logging.handlers.QueueListener):
    def enqueue_sentinel(self) -> None:
        # The queue may be full: wait for the listener to make room rather than raise.
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]


class SafeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler that survives a full disk or a vanished directory.

    A failed write is dropped and counted instead of raising, with one line on stderr when the
    trouble starts. The file is reopened (and its directory recreated) whenever it is missing or
    was replaced, so logging resumes by itself; the first line after a gap says how many
    records were lost. Each record is formatted once (the stdlib formats twice to decide on
    rotation).
    """

    def __init__(self, filename: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__(
            filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        self.dropped = 0
        self._lost_in_gap = 0
        self._failing = False

    def _open(self) -> io.TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        stream = open(  # kept open by the handler; closed in close() or when it moves
            self.baseFilename,
            "a",
            encoding="utf-8",
            errors="backslashreplace",
            opener=lambda path, flags: os.open(path, flags, 0o600),
        )
        try:
            size = os.fstat(stream.fileno()).st_size
            if size and _last_byte(self.baseFilename) != b"\n":
                stream.write("\n")  # a write cut short by a full disk: keep lines whole
        except OSError:
            pass
        return stream

    def _ensure_stream(self) -> io.TextIOWrapper:
        if self.stream is not None:
            try:
                on_disk = os.stat(self.baseFilename)
                ours = os.fstat(self.stream.fileno())
                moved = (on_disk.st_dev, on_disk.st_ino) != (ours.st_dev, ours.st_ino)
            except OSError:
                moved = True
            if moved:
                self._close_quietly()
        if self.stream is None:
            self.stream = self._open()
        stream: io.TextIOWrapper = self.stream
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            # A value that cannot be rendered: lose this record, not the file.
            self.dropped += 1
            return
        try:
            stream = self._ensure_stream()
            if self._failing:
                stream.write(self._gap_notice())
            stream.flush()
            size = os.fstat(stream.fileno()).st_size
            if 0 < self.maxBytes <= size + len(line.encode("utf-8", "replace")) and size > 0:
                self.doRollover()
                stream = self._ensure_stream()
            stream.write(line)
            stream.flush()
        except Exception as err:
            self._dropped(err)
        else:
            self._failing = False
            self._lost_in_gap = 0

    def _gap_notice(self) -> str:
        return self.format(_dropped_notice(self._lost_in_gap, "write_failed")) + self.terminator

    def _dropped(self, err: Exception) -> None:
        self.dropped += 1
        self._lost_in_gap += 1
        self._close_quietly()
        if not self._failing:
            self._failing = True
            reason = str(err)
            if isinstance(err, OSError) and err.strerror:
                reason = (
                    err.strerror
                    if err.filename in (None, self.baseFilename)
                    else (f"{err.strerror}: {err.filename}")
                )
            try:
                # The log file is where we would say so; stderr (launchd's StandardErrorPath)
                # is what is left.
                sys.stderr.write(
                    f"musicd: cannot write log file {self.baseFilename}: {reason}; "
                    "dropping log records until it works again\n"
                )
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def handleError(self, record: logging.LogRecord) -> None:
        # doRollover() and the stdlib paths land here; never print a traceback from a logger.
        self._dropped(RuntimeError("logging error"))

    def _close_quietly(self) -> None:
        stream, self.stream = self.stream, None  # reopened by emit()
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def _last_byte(path: str) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def configure_logging(
    level: str = "info",
    log_file: Path | None = None,
    *,
    console: bool | None = None,
    console_stream: TextIO | None = None,
    max_bytes: int = 5 * 1024 * 1024,
    backups: int = 3,
) -> None:
    """Configure structlog and stdlib logging once for the whole process.

    Args:
        level: debug, info, warning or error.
        log_file: JSON-lines log file (rotated by size), or None for no file.
        console: also log to stderr; None means "when stderr is a terminal".
        console_stream: where console output goes (default stderr).
        max_bytes: rotate the log file when it grows past this size.
        backups: how many rotated files to keep (log.1 … log.N).
    """
    global _pipeline
    stop_logging()
    logging.raiseExceptions = False
    numeric = LEVELS.get(level, logging.INFO)
    stream = console_stream or sys.stderr
    if console is None:
        console = stream.isatty() or log_file is None

    handlers: list[logging.Handler] = []
    if log_file is not None:
        file_handler = SafeRotatingFileHandler(log_file, max_bytes=max_bytes, backups=backups)
        file_handler.setFormatter(json_formatter())
        handlers.append(file_handler)
    if console:
        console_handler = logging.StreamHandler(stream)
        console_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=_foreign_processors(),
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _drop_logger_name_for_ours,
                    structlog.dev.ConsoleRenderer(colors=stream.isatty()),
                ],
            )
        )
        handlers.append(console_handler)

    records: queue.Queue[logging.LogRecord] = queue.Queue(MAX_QUEUED_RECORDS)
    queue_handler = _PassThroughQueueHandler(records)
    root = logging.getLogger()
    root.addHandler(queue_handler)
    root.setLevel(numeric)
    # watchdog is chatty at debug level; its warnings (e.g. inotify overflow) still come through.
    logging.getLogger("watchdog").setLevel(max(numeric, logging.INFO))
    listener = _Listener(records, *handlers, respect_handler_level=False)
    listener.start()
    _pipeline = _Pipeline(queue_handler, listener)

    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )


def stop_logging() -> None:
    """Write out queued records, stop the listener thread and close the handlers.

    Safe to call more than once. Records logged afterwards go to the stdlib's last-resort
    handler (stderr, warnings and up) instead of into a queue nobody reads.
    """
    global _pipeline
    pipeline, _pipeline = _pipeline, None
    if pipeline is not None:
        logging.getLogger().removeHandler(pipeline.queue_handler)
        pipeline.listener.stop()
        for handler in pipeline.listener.handlers:
            handler.close()


def log_without_config(event: str, **fields: Any) -> None:
    """Write one error entry to the default log file, for when the config could not be loaded.

    Under launchd nobody reads the terminal: this leaves the reason where `musicd logs` looks
    (it falls back to the same file when the config is broken).
    """
    from daemon.paths import default_log_file

    configure_logging("info", default_log_file(), console=False)
    try:
        structlog.get_logger("daemon.cli").error(event, **fields)
    finally:
        stop_logging()
