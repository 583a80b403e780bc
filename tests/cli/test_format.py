"""How the CLI writes durations, moments and counts: one style everywhere."""

from __future__ import annotations

import pytest

from daemon.cli import format as fmt


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0004, "0.4 ms"),
        (0.077839, "78 ms"),
        (0.9994, "999 ms"),
        (2.3111, "2.3 s"),
        (59.94, "59.9 s"),
        (61, "1 min 1 s"),
        (3540, "59 min"),
        (3 * 3600 + 300, "3 h 5 min"),
        (2 * 86400 + 3600, "2 d 1 h"),
        (3600, "1 h"),
        (86400, "1 d"),
    ],
)
def test_durations_are_ms_under_a_second_then_seconds_with_one_decimal(
    seconds: float, text: str
) -> None:
    assert fmt.duration(seconds) == text


def test_ms_values_use_the_same_style() -> None:
    assert fmt.ms(2311.1) == "2.3 s"
    assert fmt.ms(77.839) == "78 ms"
    assert fmt.ms(None) == "?"


def test_a_moment_ahead_reads_in_not_ago() -> None:
    now = 1_800_000_000.0
    assert fmt.when(now + 3540, now=now).endswith("(in 59 min)")
    assert fmt.when(now - 90, now=now).endswith("(1 min 30 s ago)")
    assert fmt.when(None) == "never"


def test_counts_agree_with_their_noun() -> None:
    assert fmt.plural(1, "connection") == "1 connection"
    assert fmt.plural(2, "album") == "2 albums"
    assert fmt.plural(0, "entry", "entries") == "0 entries"


def test_progress_line_says_how_far_how_fast_and_how_long() -> None:
    line = fmt.progress(
        {
            "elapsed_seconds": 4.0,
            "bytes_done": 60_000_000,
            "bytes_total": 150_000_000,
            "tracks_done": 40_000,
            "tracks_expected": 100_000,
            "fraction": 0.4,
            "bytes_per_second": 15_000_000,
            "tracks_per_second": 10_000,
            "eta_seconds": 6.0,
        }
    )
    assert line == (
        "40%, 60.0 MB of 150.0 MB, 15.0 MB/s, about 6.0 s left, 40000 tracks, running for 4.0 s"
    )
