"""How the CLI writes times, durations, counts and sizes for people: one style everywhere.

Durations: milliseconds under a second (one decimal under 10 ms), then seconds with one decimal,
then minutes. A moment is a local time with how long ago it was, or how long until it comes.
"""

from __future__ import annotations

import time
from typing import Any


def duration(seconds: float) -> str:
    """'0.4 ms', '78 ms', '2.3 s', '4 min 12 s', '3 h 5 min', '2 d 1 h'."""
    seconds = max(0.0, seconds)
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


def ms(value: float | None) -> str:
    """A duration given in milliseconds, as `duration` writes it; '?' when unknown."""
    return "?" if value is None else duration(value / 1000)


def when(ts: float | None, now: float | None = None) -> str:
    """'2026-12-01 09:12:03 (4 min ago)', '… (in 59 min)', or 'never'."""
    if ts is None:
        return "never"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    if ts > now + 0.5:
        return f"{stamp} (in {duration(ts - now)})"
    return f"{stamp} ({duration(now - ts)} ago)"


def plural(n: int, noun: str, plural_noun: str | None = None) -> str:
    """'1 connection', '2 connections', '0 albums'."""
    return f"{n} {noun if n == 1 else plural_noun or noun + 's'}"


def size(n: float) -> str:
    """Bytes for people: '812 B', '3.4 MB', '1.2 GB' (decimal units, as Finder shows them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def progress(p: dict[str, Any], *, elapsed: bool = True) -> str:
    """One line for a scan in progress (a `scan_in_progress` value of `status`)."""
    parts: list[str] = []
    if p.get("bytes_total") and p.get("bytes_done", 0) >= p["bytes_total"]:
        # Read to the end: what is left is comparing and handing the changes on.
        parts.append(f"read all {size(p['bytes_total'])}, applying the changes")
        p = {"tracks_done": p.get("tracks_done"), "elapsed_seconds": p.get("elapsed_seconds")}
    if p.get("bytes_total"):
        parts.append(f"{size(p['bytes_done'])} of {size(p['bytes_total'])}")
    elif p.get("bytes_done"):
        parts.append(size(p["bytes_done"]))
    if p.get("fraction") is not None:
        parts.insert(0, f"{p['fraction'] * 100:.0f}%")
    if p.get("bytes_per_second"):
        parts.append(f"{size(p['bytes_per_second'])}/s")
    elif p.get("tracks_per_second"):
        parts.append(f"{p['tracks_per_second']} tracks/s")
    if p.get("eta_seconds") is not None and (p.get("fraction") or 0) < 1:
        parts.append(f"about {duration(p['eta_seconds'])} left")
    if p.get("tracks_done"):
        expected = p.get("tracks_expected")
        of = f" of ~{expected}" if expected and not p.get("bytes_total") else ""
        parts.append(f"{p['tracks_done']}{of} tracks")
    # Last: a narrow terminal cuts the line, and how far and how long matter more.
    if elapsed:
        parts.append(f"running for {duration(p.get('elapsed_seconds') or 0)}")
    return ", ".join(parts)


def bar(fraction: float | None, width: int = 20) -> str:
    """'[#########...............]' for a fraction, or a blank bar when it is unknown."""
    if fraction is None:
        return "[" + " " * width + "]"
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"
