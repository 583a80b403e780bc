"""A file read forwards through one reused buffer, for `daemon.library.xml_entries`.

The XML reader looks at every byte of the library on each read (150 MB at 100k tracks).
Reading it whole would allocate a buffer the size of the file each time, fault it in, and make
it the read's peak memory. A `Window` reads a chunk at a time into one `bytearray` and keeps
only the bytes from the earliest position its caller still needs: when more are wanted, those
move to the front and the rest of the buffer is filled again. Callers speak in positions in
the file, so they never see the bytes move.

The buffer is never resized (a `bytearray` that a memoryview still points into cannot be): when
the bytes kept outgrow it, a bigger one replaces it. That happens only for what must be seen
whole, such as a run of entries longer than a chunk.

The file is read, not mapped into memory: a mapped file that another process truncates or
rewrites in place kills the reader with SIGBUS, where a read sees the bytes of one version
(an open file replaced by a rename is still read whole) or a change its caller's stat catches.
"""

from __future__ import annotations

import io
import re
from typing import Final

__all__ = ["CHUNK_SIZE", "Window"]

# Bytes read at a time: few system calls, and a buffer that stays small next to the file.
CHUNK_SIZE: Final = 1 << 20


class Window:
    """The bytes of `stream` from the earliest position still kept up to `stop`."""

    def __init__(self, stream: io.RawIOBase, chunk_size: int = CHUNK_SIZE) -> None:
        self._stream = stream
        self.chunk_size = chunk_size
        self._buf = bytearray(2 * chunk_size)
        self._base = 0  # the position in the file of self._buf[0]
        self.stop = 0  # the position after the last byte read
        self.eof = False

    @property
    def capacity(self) -> int:
        """The size of the buffer: what a read holds, whatever the size of the file."""
        return len(self._buf)

    def more(self, keep: int) -> bool:
        """Read another chunk, dropping the bytes before position `keep`; False at the end."""
        if self.eof:
            return False
        keep = min(keep, self.stop)
        start, end = keep - self._base, self.stop - self._base
        if len(self._buf) - end < self.chunk_size:
            kept, size = end - start, len(self._buf)
            if kept > size - self.chunk_size or (kept > self.chunk_size and 2 * kept > size):
                # No room for a chunk, or more bytes to move than it would free: grow, so
                # that the bytes moved stay fewer than those read, however long the caller
                # keeps them. Up to a chunk kept, two chunks are enough.
                grown = bytearray(2 * (kept + self.chunk_size))
                grown[:kept] = self._buf[start:end]
                self._buf = grown
            else:
                self._buf[:kept] = self._buf[start:end]  # same length: not a resize
            self._base, end = keep, kept
        with memoryview(self._buf)[end : end + self.chunk_size] as free:
            count = self._stream.readinto(free)
        if not count:
            self.eof = True
            return False
        self.stop += count
        return True

    def ensure(self, stop: int, keep: int) -> bool:
        """Make the bytes up to position `stop` available; False if the file ends before."""
        while self.stop < stop:
            if not self.more(keep):
                return False
        return True

    def find(self, sub: bytes, start: int, keep: int) -> int:
        """The position of `sub` at or after `start`, reading on as needed; -1 at the end."""
        while True:
            found = self._buf.find(sub, start - self._base, self.stop - self._base)
            if found >= 0:
                return found + self._base
            start = max(start, self.stop - len(sub) + 1)
            if not self.more(keep):
                return -1

    def match_end(self, pattern: re.Pattern[bytes], start: int, stop: int) -> int:
        """Where a match of `pattern` at `start` (within `stop`) ends, or -1."""
        found = pattern.match(self._buf, start - self._base, stop - self._base)
        return -1 if found is None else found.end() + self._base

    def search_end(self, pattern: re.Pattern[bytes], start: int) -> int:
        """Where the first match of `pattern` in the bytes read from `start` on ends, or -1."""
        found = pattern.search(self._buf, start - self._base, self.stop - self._base)
        return -1 if found is None else found.end() + self._base

    def view(self, start: int, stop: int) -> memoryview:
        """The bytes from `start` to `stop`, without a copy: valid until the next `more`."""
        return memoryview(self._buf)[start - self._base : stop - self._base]

    def copy(self, start: int, stop: int) -> bytes:
        """A copy of the bytes from `start` to `stop`."""
        with memoryview(self._buf)[start - self._base : stop - self._base] as view:
            return view.tobytes()
