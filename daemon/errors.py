"""One exception hierarchy; each error carries a stable code and the exit status it maps to."""

from __future__ import annotations

import os
from typing import Any

# sysexits.h values: launchd and shells understand them, and 78 tells a supervisor that
# restarting will not help until a person fixes the configuration.
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78
EXIT_NOT_RUNNING = 3


class DaemonError(Exception):
    """Base of every error a user can cause; `str(err)` is a one-line message for a person.

    A subclass states its code and exit status in its header, e.g.
    `class StateError(DaemonError, code="state_error", exit_status=EX_CANTCREAT)`; what it
    leaves out it inherits.
    """

    code = "daemon_error"
    exit_status = 1

    def __init_subclass__(
        cls, *, code: str | None = None, exit_status: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if exit_status is not None:
            cls.exit_status = exit_status


class ConfigError(DaemonError, code="config_error", exit_status=EX_CONFIG):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        # One entry per problem, for `musicd check-config` to list them one a line.
        self.problems: list[str] = [message]


class LibraryReadError(DaemonError, code="library_unreadable", exit_status=EX_DATAERR):
    """The library file could not be read or parsed; nothing from it may be trusted.

    `os_errno` is set when the cause was an OS error on the library (stat, open, read), so
    `status` can name it and say what fixes it.
    """

    def __init__(self, message: str, *, os_errno: int | None = None) -> None:
        super().__init__(message)
        self.os_errno = os_errno


class LibraryChangedDuringRead(LibraryReadError, code="library_changed_during_read"):
    pass


class LibraryReadStalled(LibraryReadError, code="library_read_stalled"):
    """A read ran past `library.read_timeout_seconds`; it is left running, and used if it ends."""


class InputError(DaemonError, code="bad_input_file", exit_status=EX_DATAERR):
    """A file the user gave (to import, say) is not what it should be."""


class MissingInput(DaemonError, code="missing_input_file", exit_status=EX_NOINPUT):
    pass


class StateError(DaemonError, code="state_error", exit_status=EX_CANTCREAT):
    pass


class AlreadyRunning(DaemonError, code="already_running", exit_status=EX_TEMPFAIL):
    pass


class NotRunning(DaemonError, code="not_running", exit_status=EXIT_NOT_RUNNING):
    pass


class SocketPathTooLong(ConfigError, code="socket_path_too_long"):
    pass


class RemoteError(DaemonError, code="remote_error"):
    """The daemon answered a request with a JSON-RPC error."""

    def __init__(self, message: str, rpc_code: int = 0, data: object = None) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.data = data


def describe_os_error(err: OSError) -> str:
    """Short human text for an OSError, e.g. 'No space left on device'."""
    return err.strerror or os.strerror(err.errno or 0) or type(err).__name__
