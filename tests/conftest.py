"""Markers every test directory shares."""

from __future__ import annotations

import sys

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A `macos` test checks what only a real Mac can show (FSEvents' canonical paths,
    # launchctl's own answers): elsewhere it would pass or fail for reasons of its own.
    if sys.platform == "darwin":
        return
    skip = pytest.mark.skip(reason="macOS only")
    for item in items:
        if item.get_closest_marker("macos") is not None:
            item.add_marker(skip)
