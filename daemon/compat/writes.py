"""Announce a host's writes to the daemon right before it makes them (`writes.expect`), so
their echo in the library comes back with the host's name as `origin`.

    from daemon.compat import expect_writes
    await expect_writes("genre-updater", [{"id": track_id, "genre": "Cool Jazz", "year": "1959"}])

(`expect_writes_sync` for a host without an event loop; `WriteAnnouncer` holds the options.)

A track is named by `id`, Music.app's number for it (its scripting `id`, `music_id`, unless
`by` says another), as a host keeps it: text or a number. The other keys are new values under
the daemon's field names (`name`, `album`, `genre`, `year`, ...); None means "not written" and
is left out, a year given as text is sent as a number.

These calls never raise into the host's write path and never wait for long (one request,
`ANNOUNCE_TIMEOUT_SECONDS`). When the daemon is away, or refuses the announcement (a number no
track has since Music.app restarted), nothing is recorded: the host is told once by a warning
(then at debug), its write goes on, and its echo comes back as anyone's change
(`origin: null`). Nothing is kept to send later: an announcement is worth something only
before its write.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import anyio

from daemon.client import AsyncMusicdClient
from daemon.compat.link import locate
from daemon.errors import DaemonError

ANNOUNCE_TIMEOUT_SECONDS: Final = 2.0
# The daemon takes this many tracks a call (control/params.py MAX_BATCH).
BATCH: Final = 1000

_log = logging.getLogger(__name__)
# Which kinds of failure this process has warned about, for which socket: a host writing a
# thousand tracks while the daemon is away is told once, not a thousand times.
_warned: set[tuple[str, str]] = set()


def wire_tracks(tracks: Iterable[Mapping[str, Any]], by: str) -> list[dict[str, Any]]:
    """The host's {id, field: value} items as `writes.expect` takes them."""
    wire = []
    for track in tracks:
        fields = {k: v for k, v in track.items() if k != "id" and v is not None}
        year = fields.get("year")
        if isinstance(year, str):
            # A host keeps the year as text ("1959"); one that is not a number is not sent.
            if year.strip().isdigit():
                fields["year"] = int(year)
            else:
                del fields["year"]
        if fields:
            wire.append({by: int(track["id"]), "fields": fields})
    return wire


# What may go wrong while announcing: the daemon away, slow or refusing (DaemonError, OSError),
# an id that is not a number (ValueError), an item without one (KeyError).
_NOT_RECORDED: Final = (DaemonError, OSError, ValueError, KeyError)


def _chunks(tracks: Iterable[Mapping[str, Any]], by: str) -> list[list[dict[str, Any]]]:
    wire = wire_tracks(tracks, by)
    return [wire[start : start + BATCH] for start in range(0, len(wire), BATCH)]


class WriteAnnouncer:
    """One host's announcements: its name, how it names tracks, where the daemon is."""

    def __init__(
        self,
        origin: str,
        *,
        by: str = "music_id",
        ttl_seconds: float = 600.0,
        socket_path: str | os.PathLike[str] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.origin = origin
        self.by = by
        self.ttl_seconds = ttl_seconds
        self.socket_path = socket_path
        self.logger = logger or _log

    async def expect_writes(self, tracks: Iterable[Mapping[str, Any]]) -> int:
        """Announce writes of these tracks; how many the daemon recorded (0 when it recorded
        none: it is away or refused them, which is logged, never raised)."""
        socket, _ = locate(self.socket_path)
        try:
            chunks = _chunks(tracks, self.by)
            if not chunks:
                return 0
            async with AsyncMusicdClient(socket, timeout=ANNOUNCE_TIMEOUT_SECONDS) as client:
                return sum(
                    [
                        await client.expect_writes(self.origin, c, ttl_seconds=self.ttl_seconds)
                        for c in chunks
                    ]
                )
        except _NOT_RECORDED as err:
            return self._not_recorded(socket, err)

    def expect_writes_sync(self, tracks: Iterable[Mapping[str, Any]]) -> int:
        """`expect_writes` for a host without an event loop (in this thread): the same, on an
        event loop of its own for the one request."""
        try:
            return anyio.run(self.expect_writes, tracks)
        except RuntimeError as err:  # called where an event loop already runs
            return self._not_recorded(locate(self.socket_path)[0], err)

    def _not_recorded(self, socket: Path, err: Exception) -> int:
        seen = (str(socket), type(err).__name__)
        if seen in _warned:
            self.logger.debug("musicd did not record the announced writes: %s", err)
            return 0
        _warned.add(seen)
        self.logger.warning(
            "musicd did not record the announced writes: %s; the writes go on, and their "
            "echo comes back as anyone's change",
            err,
        )
        return 0


async def expect_writes(origin: str, tracks: Iterable[Mapping[str, Any]], **options: Any) -> int:
    """`WriteAnnouncer(origin, **options).expect_writes(tracks)`."""
    return await WriteAnnouncer(origin, **options).expect_writes(tracks)


def expect_writes_sync(origin: str, tracks: Iterable[Mapping[str, Any]], **options: Any) -> int:
    """`WriteAnnouncer(origin, **options).expect_writes_sync(tracks)`."""
    return WriteAnnouncer(origin, **options).expect_writes_sync(tracks)
