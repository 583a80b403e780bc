"""Commands suggested to a person, written so that they work when pasted.

A hint names the executable this process was started as (`musicd` only when that is what the
shell finds on PATH, else its absolute path, or `python -m daemon`) and repeats the `--config` /
`--socket` the user gave: a bare `musicd stop` would reach the default socket and report "not
running" about a daemon that runs. The daemon runs inside `musicd run`, so `run` hands the same
`Invocation` to it, and the daemon's own messages use it too.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass

PathArg = str | os.PathLike[str] | None


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


@dataclass(frozen=True)
class Invocation:
    """How this process was started: the executable, and the `--config` / `--socket` it was
    given (absolute: a hint may be pasted in another terminal, in another directory)."""

    program: str
    config: str | None = None
    socket: str | None = None

    @classmethod
    def of(cls, *, config: PathArg, socket: PathArg) -> Invocation:
        """This process's invocation with these options (a config may come from $MUSICD_CONFIG)."""
        config = config or os.environ.get("MUSICD_CONFIG") or None
        return cls(
            program=program(),
            config=os.path.abspath(os.path.expanduser(config)) if config else None,
            socket=os.path.abspath(os.path.expanduser(socket)) if socket else None,
        )

    @property
    def explicit_location(self) -> bool:
        """Whether the user named a config or a socket (else the defaults are in use)."""
        return self.config is not None or self.socket is not None

    def command(self, *words: str, config: bool = True, socket: bool = True) -> str:
        """A `musicd` command line for `words`, with the config/socket options in use.

        `config=False` / `socket=False` leave out an option the command does not take (`run`
        has no `--socket`) or one the words already give.
        """
        parts = [self.program, *(shlex.quote(w) for w in words)]
        if config and self.config:
            parts += ["--config", shlex.quote(self.config)]
        if socket and self.socket:
            parts += ["--socket", shlex.quote(self.socket)]
        return " ".join(parts)
