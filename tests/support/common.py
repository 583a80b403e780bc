"""What every kind of test needs: the repository's place, short temp dirs, deadline waits."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures" / "real-libraries"


def short_tempdir(prefix: str = "musicd-t-") -> Path:
    """A temp dir with a short path: Unix socket paths must stay under 104 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block under `mask` (e.g. a user's lax 022), then put the old one back."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)
