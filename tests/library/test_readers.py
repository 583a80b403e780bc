"""Every reader is a `LibraryReader`: the scanner calls read, forget and cancel on whichever
`library.source` chose, with no method looked up by name.

mypy checks this file with `daemon/` (pyproject.toml): the typed assignments below hold each
reader class to the Protocol statically, the isinstance checks at run time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from daemon.app import make_reader
from daemon.config import config_from_mapping
from daemon.library import LibraryReader
from daemon.library.fast_xml import FastXmlReader
from daemon.library.music_app import MusicAppReader
from daemon.models import Track


class NoTracks:
    """An empty snapshot (`KnownTracks`)."""

    def get(self, keys: Collection[str]) -> dict[str, Track]:
        return {}

    def keys(self) -> Iterator[str]:
        return iter(())


@pytest.mark.parametrize("source", ["xml", "music-app"])
def test_every_reader_make_reader_builds_is_a_library_reader(source: str, tmp_path: Path) -> None:
    config = config_from_mapping({"library": {"source": source, "path": str(tmp_path / "L")}})
    reader: LibraryReader = make_reader(config, NoTracks(), rescan_command="musicd rescan")
    assert isinstance(reader, LibraryReader)


def test_every_reader_class_implements_the_whole_protocol(tmp_path: Path) -> None:
    readers: list[LibraryReader] = [
        FastXmlReader(tmp_path / "Library.xml"),
        MusicAppReader(
            tmp_path / "L",
            timeout_seconds=1.0,
            full_scan_interval_seconds=60.0,
            rescan_command="musicd rescan",
        ),
    ]
    for reader in readers:
        assert isinstance(reader, LibraryReader), type(reader).__name__
        # A reader with nothing to forget or stop still answers, as a no-op.
        reader.forget()
        reader.cancel()
