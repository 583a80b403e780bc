"""`KeyOrder`: every key of a full read, in file order, at about 8 bytes a key.

A full read keeps the keys it has seen for two things: the snapshot's keys it did not see are
gone, and the incremental reader pairs the file's entries with them, in order, to rebuild its
fingerprints. Kept as a dict of strings they cost about 100 bytes a key (30 MB at 300k tracks),
all of it at the read's peak, in objects the allocator may not get back whole. Every library
Music.app or iTunes writes keys its tracks by a Persistent ID of 16 hex digits, a 64-bit
number: those are kept as numbers in an array; the rare other keys (tracks given a fallback
identity) are kept by their position.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Final

__all__ = ["KeyOrder", "hex16_key", "hex16_number"]

_HEX16: Final = re.compile(r"[0-9A-F]{16}")


def hex16_number(key: str) -> int | None:
    """A normalised Persistent ID as the 64-bit number it spells, or None if it spells none."""
    return int(key, 16) if _HEX16.fullmatch(key) else None


def hex16_key(number: int) -> str:
    """The normalised spelling of a Persistent ID's number (`hex16_number` read back)."""
    return f"{number:016X}"


class KeyOrder:
    """Keys in the order they were added, with `len`, iteration and `in`.

    Adding is all done before the first `in`: the sorted copy `in` searches is made once.
    """

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._numbers = array("Q")
        # By position: the keys that are not 16 hex digits (their number there is a 0 that
        # stands for nothing).
        self._others: dict[int, str] = {}
        # What `in` searches, made at the first `in`: the numbers sorted, the other keys.
        self._lookup: tuple[array[int], frozenset[str]] | None = None
        self.extend(keys)

    def extend(self, keys: Iterable[str]) -> None:
        for key in keys:
            number = hex16_number(key)
            if number is None:
                self._others[len(self._numbers)] = key
                number = 0
            self._numbers.append(number)
        self._lookup = None

    def __len__(self) -> int:
        return len(self._numbers)

    def __iter__(self) -> Iterator[str]:
        others = self._others
        for position, number in enumerate(self._numbers):
            yield others[position] if others and position in others else hex16_key(number)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if self._lookup is None:
            numbers: Iterable[int] = self._numbers
            if self._others:
                numbers = (n for i, n in enumerate(self._numbers) if i not in self._others)
            self._lookup = (array("Q", sorted(numbers)), frozenset(self._others.values()))
        ordered, others = self._lookup
        number = hex16_number(key)
        if number is None:
            return key in others
        i = bisect_left(ordered, number)
        return i < len(ordered) and ordered[i] == number
