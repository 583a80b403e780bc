"""apply_process_policy(): what the daemon sets for its whole process, in one place, once.

Process-wide settings are made here when the daemon starts (app.run), never as a side effect of
importing a module: a client program that imports daemon.logs or daemon.control must find its
own process untouched. What is set:

- the open-file limit (RLIMIT_NOFILE) is raised, within the hard limit, to fit the control
  server's connections plus FD_RESERVE (daemon/control/endpoint.py then reads what fits);
- logging's queued records are written out at interpreter exit (stop_logging), however the
  daemon's process ends short of os._exit; every command that configures logging also stops
  it in a `finally` of its own.

Logging itself is configured by the run command (configure_logging), which owns the console
and the log file.
"""

from __future__ import annotations

import atexit
import contextlib
import resource

from daemon.control.endpoint import FD_RESERVE
from daemon.control.server import Limits
from daemon.logs import stop_logging

_exit_hook_registered = False


def apply_process_policy(*, max_connections: int | None = None) -> None:
    """Set the daemon's process-wide policy; calling it again changes nothing more.

    Args:
        max_connections: the connections the control server will accept; the default is the
            server's own limit (Limits.max_connections).
    """
    wanted = max_connections if max_connections is not None else Limits().max_connections
    raise_open_file_limit(wanted + FD_RESERVE)
    _register_exit_hook()


def raise_open_file_limit(need: int) -> None:
    """Raise the soft open-file limit to `need` (or the hard limit, if lower).

    Never lowers it, and a refusal leaves it as it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _register_exit_hook() -> None:
    # Once per process: atexit would otherwise call stop_logging once per registration.
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(stop_logging)
        _exit_hook_registered = True
