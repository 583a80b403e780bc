"""Commands suggested to a person, written so that they work when pasted.

A hint names the executable this process was started as (`musicd` only when that is what the
shell finds on PATH, else its absolute path, or `python -m daemon`) and repeats the `--config` /
`--socket` the user gave: a bare `musicd stop` would reach the default socket and report "not
running" about a daemon that runs. The daemon runs inside `musicd run`, so its own messages use
the same invocation.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

_config: str | None = None
_socket: str | None = None


PathArg = str | os.PathLike[str] | None


def remember(*, config: PathArg, socket: PathArg) -> None:
    """Record the `--config` / `--socket` this process was given (or $MUSICD_CONFIG)."""
    global _config, _socket
    config = config or os.environ.get("MUSICD_CONFIG") or None
    # Absolute: the hint may be pasted in another terminal, in another directory.
    _config = os.path.abspath(os.path.expanduser(config)) if config else None
    _socket = os.path.abspath(os.path.expanduser(socket)) if socket else None


def explicit_location() -> bool:
    """Whether the user named a config or a socket (else the defaults are in use)."""
    return _config is not None or _socket is not None


def given_config() -> str | None:
    return _config


def given_socket() -> str | None:
    return _socket


def program() -> str:
    """The executable as the user can run it again, quoted for a POSIX shell."""
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    if not argv0 or name in ("__main__.py", "-c", "-m") or not os.path.exists(argv0):
        return f"{shlex.quote(sys.executable)} -m daemon"
    found = shutil.which(name)
    try:
        if found and os.path.samefile(found, argv0):
            return name
    except OSError:
        pass
    return shlex.quote(os.path.abspath(argv0))


def command(*words: str, config: bool = True, socket: bool = True) -> str:
    """A `musicd` command line for `words`, with the config/socket options in use.

    `config=False` / `socket=False` leave out an option the command does not take (`run` has
    no `--socket`) or one the words already give.
    """
    parts = [program(), *(shlex.quote(w) for w in words)]
    if config and _config:
        parts += ["--config", shlex.quote(_config)]
    if socket and _socket:
        parts += ["--socket", shlex.quote(_socket)]
    return " ".join(parts)
