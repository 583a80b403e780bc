"""The cache's sources: which names a write may use (`cache.sources` in the config) and the
hit/miss counters, kept only for names the configuration knows.

`CacheApi` (cache_api.py) holds the one `Sources`: `cache.put` and `cache.put_many` both check a
source here, so the two cannot drift apart. A read
may name any source (it simply misses), but its count goes to one `(other)` bucket: counters
keyed by whatever a client sends would grow for ever, and `stats` with them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final

from daemon.stores.cache import normalize_source

# Where reads of a source the configuration does not name are counted.
OTHER: Final = "(other)"
# With `"*"` in cache.sources any name is accepted: the first this many get counters of their
# own, later ones are counted under OTHER.
MAX_COUNTED_SOURCES: Final = 64


class UnknownSource(ValueError):
    """A write names a source the configuration does not accept."""


class Sources:
    """The configured sources and the read counters of each."""

    def __init__(self, configured: Iterable[str]) -> None:
        names = [normalize_source(s) for s in configured]
        self.configured: tuple[str, ...] = tuple(names)
        self.any = "*" in names
        self.known = frozenset(n for n in names if n != "*")
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    def check(self, source: str) -> str:
        """The source as stored; UnknownSource when the configuration does not accept it."""
        name = normalize_source(source)
        if not self.any and name not in self.known:
            raise UnknownSource(
                f"unknown source {source!r}; known sources: {', '.join(self.configured)} "
                "(add one with cache.sources in the config)"
            )
        return name

    def count(self, source: str, *, hit: bool) -> None:
        """Count one read of `source` (hit or miss) under its bucket."""
        counter = self.hits if hit else self.misses
        counter[self._bucket(normalize_source(source))] += 1

    def _bucket(self, name: str) -> str:
        if name in self.known:
            return name
        if self.any and name != OTHER:
            if name in self.hits or name in self.misses:
                return name
            if len(self.hits.keys() | self.misses.keys()) < MAX_COUNTED_SOURCES:
                return name
        return OTHER

    def counted(self) -> set[str]:
        """Every bucket with a count."""
        return set(self.hits.keys() | self.misses.keys())
