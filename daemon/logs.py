"""configure_logging(): structlog to a rotating JSON-lines file and, on a terminal, the console.

Records go through a queue to a listener thread, so a slow or full disk never blocks the event
loop, and a failing handler never raises into the daemon (logging.raiseExceptions is off).
watchdog's stdlib records take the same path through ProcessorFormatter.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
import structlog.tracebacks
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}

_listener: logging.handlers.QueueListener | None = None


def _orjson_dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def _capture_exc_info(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Rendering happens on the listener thread, where sys.exc_info() is empty: pin it here.
    if event_dict.get("exc_info") is True:
        event_dict["exc_info"] = sys.exc_info()
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        _capture_exc_info,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _drop_logger_name_for_ours(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Our own loggers are named after modules; keep the name only for foreign (stdlib) records.
    name = event_dict.get("logger")
    if isinstance(name, str) and name.startswith("daemon"):
        event_dict.pop("logger")
    return event_dict


class _PassThroughQueueHandler(logging.handlers.QueueHandler):
    """Hands the record over untouched: ProcessorFormatter needs the original event dict."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class SafeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler that survives a full disk or a vanished directory.

    A failed write is dropped (and counted) instead of raising; the file is reopened on the next
    record, so logging resumes by itself when space returns or the directory is recreated.
    """

    dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is None:
                Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            super().emit(record)
        except Exception:
            SafeRotatingFileHandler.dropped += 1
            self._close_quietly()

    def _close_quietly(self) -> None:
        try:
            if self.stream is not None:
                self.stream.close()
        except OSError:
            pass
        self.stream = None  # type: ignore[assignment]  # reopened lazily by emit()


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
        backups: how many rotated files to keep.
    """
    global _listener
    stop_logging()
    logging.raiseExceptions = False
    numeric = LEVELS.get(level, logging.INFO)
    shared = _shared_processors()
    stream = console_stream or sys.stderr
    if console is None:
        console = stream.isatty() or log_file is None

    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        file_handler = SafeRotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _drop_logger_name_for_ours,
                    structlog.processors.ExceptionRenderer(
                        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                    ),
                    structlog.processors.JSONRenderer(serializer=_orjson_dumps),
                ],
            )
        )
        handlers.append(file_handler)
    if console:
        console_handler = logging.StreamHandler(stream)
        console_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _drop_logger_name_for_ours,
                    structlog.dev.ConsoleRenderer(colors=stream.isatty()),
                ],
            )
        )
        handlers.append(console_handler)

    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_PassThroughQueueHandler(records))
    root.setLevel(numeric)
    # watchdog is chatty at debug level; its warnings (e.g. inotify overflow) still come through.
    logging.getLogger("watchdog").setLevel(max(numeric, logging.INFO))
    _listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=False)
    _listener.start()

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )


def stop_logging() -> None:
    """Flush queued records to their handlers and stop the listener thread."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for handler in _listener.handlers:
            handler.close()
        _listener = None


atexit.register(stop_logging)
