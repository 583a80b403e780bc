"""Fixtures for the tests that use an in-process control server; each such test package's
conftest.py imports them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog

from tests.control.local_server import LocalServer, local_server


@pytest.fixture(autouse=True)
def quiet_structlog() -> Iterator[None]:
    """The in-process server logs from its own thread, also between pytest's capture phases:
    send structlog's default output nowhere (capture_logs still sees every event)."""
    saved = structlog.get_config()
    with open(os.devnull, "w") as devnull:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(devnull))
        try:
            yield
        finally:
            structlog.configure(**saved)


@pytest.fixture
def local() -> Iterator[LocalServer]:
    """An in-process control server with default limits on the sample library."""
    with local_server() as server:
        yield server
