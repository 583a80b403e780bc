"""`python -m daemon`, with the scanner handing the snapshot's tracks to the reader first.

The benchmark runs the daemon this way once more to show what that one call (not yet made by
daemon/app.py) saves in memory after a restart:

    reader.adopt(daemon.snapshot.tracks)   # in app._serve, before the scanner starts
"""

from __future__ import annotations

import sys
from typing import Any

import daemon.scanner
from daemon.cli import main

_init = daemon.scanner.Scanner.__init__


def _init_and_adopt(self: daemon.scanner.Scanner, **kwargs: Any) -> None:
    _init(self, **kwargs)
    adopt = getattr(kwargs["reader"], "adopt", None)
    if adopt is not None:
        adopt(kwargs["baseline"])


daemon.scanner.Scanner.__init__ = _init_and_adopt  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
