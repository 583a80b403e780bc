"""KeyOrder: a full read's keys in file order, as numbers where they are Persistent IDs."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from daemon.library.keys import KeyOrder, hex16_key, hex16_number

PIDS = st.integers(min_value=0, max_value=2**64 - 1).map(hex16_key)
# Fallback identities and spellings that are not a normalised Persistent ID.
OTHERS = st.sampled_from(["L:file:///a.m4a", "T:abc", "00000000000000ab", "0" * 15, "0" * 17, ""])


@given(st.lists(st.one_of(PIDS, OTHERS), unique=True), st.lists(st.one_of(PIDS, OTHERS)))
def test_key_order_answers_as_a_dict_of_its_keys_does(keys: list[str], probes: list[str]) -> None:
    order, plain = KeyOrder(keys), dict.fromkeys(keys)
    assert list(order) == list(plain)
    assert len(order) == len(plain)
    for key in [*probes, *keys]:
        assert (key in order) == (key in plain)


def test_a_fallback_key_is_not_taken_for_the_persistent_id_zero() -> None:
    # A fallback key's place in the array holds a 0 that stands for nothing.
    order = KeyOrder(["L:file:///a.m4a"])
    assert "0000000000000000" not in order
    order.extend(["0000000000000000"])
    assert "0000000000000000" in order
    assert list(order) == ["L:file:///a.m4a", "0000000000000000"]


def test_keys_added_after_a_lookup_are_found() -> None:
    order = KeyOrder([hex16_key(1)])
    assert hex16_key(2) not in order
    order.extend([hex16_key(2), "T:x"])
    assert hex16_key(2) in order and "T:x" in order


def test_hex16_number_reads_only_the_normalised_spelling() -> None:
    assert hex16_number("00000000000000FF") == 255
    assert hex16_number("00000000000000ff") is None
    assert hex16_number("FF") is None
    assert hex16_key(255) == "00000000000000FF"


def test_key_order_keeps_about_8_bytes_a_persistent_id() -> None:
    keys = [hex16_key(n * 7919) for n in range(100_000)]
    tracemalloc.start()
    try:
        order = KeyOrder(keys)
        assert keys[-1] in order  # the sorted copy `in` searches included
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Two arrays of 8 bytes a key (file order, sorted); a dict of the strings takes ~100.
    assert held < 20 * len(keys), held
