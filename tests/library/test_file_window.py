"""A file read through one reused buffer: positions are the file's, whatever the chunks."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.library.file_window import Window


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="musicd-fw-") as d:
        yield Path(d)


def window_over(workdir: Path, data: bytes, chunk_size: int) -> Iterator[Window]:
    path = workdir / "file"
    path.write_bytes(data)
    with open(path, "rb", buffering=0) as stream:
        yield Window(stream, chunk_size)


DATA = b"".join(b"<key>%d</key><dict>%s</dict>\n" % (i, b"x" * (i % 50)) for i in range(400))


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096, len(DATA)])
def test_find_sees_a_string_across_chunk_boundaries(workdir: Path, chunk_size: int) -> None:
    for window in window_over(workdir, DATA, chunk_size):
        pos, found = 0, []
        while (end := window.find(b"</dict>", pos, pos)) >= 0:
            found.append(end)
            pos = end + len(b"</dict>")
        assert found == [m.start() for m in re.finditer(b"</dict>", DATA)]
        assert window.eof and window.stop == len(DATA)


@pytest.mark.parametrize("chunk_size", [3, 64, 1000])
def test_bytes_kept_stay_at_their_positions_as_the_window_moves(
    workdir: Path, chunk_size: int
) -> None:
    for window in window_over(workdir, DATA, chunk_size):
        # Keep from a position far behind: the window grows to hold it, then moves on.
        assert window.ensure(5000, 100)
        assert window.copy(100, 5000) == DATA[100:5000]
        assert window.ensure(9000, 4000)
        assert window.copy(4000, 9000) == DATA[4000:9000]
        assert bytes(window.view(8000, 9000)) == DATA[8000:9000]
        key = DATA.index(b"<key>", 8000)
        assert window.match_end(re.compile(rb"<key>\d+"), key, 9000) == DATA.index(b"<", key + 1)
        assert window.match_end(re.compile(rb"<dict>"), key, 9000) == -1
        assert not window.ensure(len(DATA) + 1, len(DATA) - 10)
        assert window.copy(len(DATA) - 10, len(DATA)) == DATA[-10:]


@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_a_file_that_ends_exactly_at_a_chunk_boundary(workdir: Path, chunks: int) -> None:
    data = (DATA * 2)[: 64 * chunks]
    for window in window_over(workdir, data, 64):
        assert window.ensure(len(data), 0)
        assert not window.eof  # the end shows only when a read comes back empty
        assert not window.more(0) and window.eof
        assert window.stop == len(data) and window.copy(0, len(data)) == data
        assert window.find(b"\0", 0, 0) == -1


def test_the_buffer_holds_what_is_kept_not_the_file(workdir: Path) -> None:
    data = DATA * 20
    for window in window_over(workdir, data, 256):
        pos = 0
        while window.more(pos):
            pos = max(pos, window.stop - 300)  # never more than 300 bytes kept behind
        assert window.stop == len(data)
        assert window.capacity <= 4 * 256 + 2 * 300 < len(data) // 10


def test_a_file_replaced_by_a_rename_is_still_read_whole(workdir: Path) -> None:
    path = workdir / "file"
    path.write_bytes(DATA)
    with open(path, "rb", buffering=0) as stream:
        window = Window(stream, 64)
        assert window.ensure(1000, 0)
        saved = workdir / ".saving"
        saved.write_bytes(b"another version")
        saved.replace(path)
        assert window.ensure(len(DATA), 0) and not window.more(0)
        assert window.copy(0, len(DATA)) == DATA
