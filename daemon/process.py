"""apply_process_policy(): what the daemon sets for its whole process, in one place, once.

Process-wide settings are made here when the daemon starts (app.run), never as a side effect of
importing a module: a client program that imports daemon.logs or daemon.control must find its
own process untouched. What is set:

- the open-file limit (RLIMIT_NOFILE) is raised, within the hard limit, to fit the control
  server's connections plus FD_RESERVE (daemon/control/endpoint.py then reads what fits);
- logging's queued records are written out at interpreter exit (stop_logging), however the
  daemon's process ends short of os._exit; every command that configures logging also stops
  it in a `finally` of its own.

Memory is the other process-wide matter. A full read of a big library makes and drops millions
of small objects, and the few that outlive it are scattered among them. Python's own small-object
allocator (pymalloc) gives memory back to the system only in whole 1 MiB arenas, so a handful
of survivors keeps most arenas the read touched (about 30 MiB at 100k tracks, several times
that at 300k). The C allocator frees by the page, and hands free pages back when asked. So:

- `musicd run` runs under the C allocator (`PYTHONMALLOC=malloc`, read by the interpreter at
  start-up only): the launchd agent sets it, and a `run` started without it replaces itself
  with the same command under it (`daemon.cli.run.exec_with_c_allocator`). A value the user
  set is kept.
- after each scan, release_free_memory() asks the C allocator to return its free pages: most
  after a full read, a little after an incremental one, for about 2 ms of CPU when there is
  little to return.

Logging itself is configured by the run command (configure_logging), which owns the console
and the log file.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
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


def release_free_memory() -> None:
    """Ask the C allocator to hand its free pages back to the system.

    glibc's `malloc_trim(0)` returns free pages from anywhere in its heaps; on macOS
    `malloc_zone_pressure_relief(NULL, 0)` does the same for every zone. Elsewhere (musl, other
    C libraries) nothing is done. Takes a few milliseconds; call it off the event loop.
    """
    libc = ctypes.CDLL(None)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(ctypes.c_size_t(0))
    elif hasattr(libc, "malloc_zone_pressure_relief"):
        libc.malloc_zone_pressure_relief(None, ctypes.c_size_t(0))
