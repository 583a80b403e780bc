"""compat's road to the daemon, and what it does while no daemon answers.

One `DaemonLink` serves one `ApiCacheService`. While the daemon answers, every call goes over
the socket. When it stops answering (not started, stopped mid-run, restarting), the host
program is not told: the link says so once, as a warning with the command that fixes it, and
for the rest of the time it is away

- reads come from the daemon's database file, opened read-only (where it exists), less what
  this program invalidated or cleared meanwhile;
- writes (answers, invalidations, a clear) are kept in memory, in order, and sent when the
  daemon answers again: at most every `retry_seconds` a call tries to reconnect first.

Nothing here waits on the host's event loop for more than one socket round trip, and reading
the database file runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from daemon.client import AsyncMusicdClient
from daemon.config import load_config
from daemon.control.protocol import ANSWER_TOO_LARGE
from daemon.errors import DaemonError, RemoteError
from daemon.models import album_key
from daemon.stores import cache
from daemon.stores.schema import DB_FILE, connect, reading

T = TypeVar("T")
Key = tuple[str, str, str]
Albums = Sequence[tuple[str, str]]

# How often a call while the daemon is away tries to reach it again.
RETRY_SECONDS: Final = 5.0
# The daemon's batch calls take this many items at most (control/params.py MAX_BATCH).
BATCH: Final = 1000

# After the client's own message, which names the socket and the command that starts musicd.
AWAY_MEANS: Final = (
    "this program goes on: answers are read from musicd's database and writes wait in memory "
    "until it answers"
)


def _keys_that_fit(err: RemoteError) -> int | None:
    """How many keys of a refused `cache.get_many` fit the daemon's answer bound; None when
    the error is another one."""
    if err.rpc_code != ANSWER_TOO_LARGE or not isinstance(err.data, dict):
        return None
    fits = err.data.get("fits")
    return fits if isinstance(fits, int) and fits >= 0 else None


class DaemonAway(Exception):
    """No daemon answered: the caller falls back to the database file and the queue."""


def locate(socket_path: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    """(socket, database file) from the musicd config (MUSICD_CONFIG or the default file);
    a config that cannot be read means the defaults, so the host never fails here."""
    try:
        config = load_config()
        socket, state = config.control.socket, config.state.dir
    except DaemonError:
        from daemon.paths import default_socket_path, default_state_dir

        socket, state = default_socket_path(), default_state_dir()
    return (Path(socket_path) if socket_path is not None else socket), state / DB_FILE


class DaemonLink:
    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None,
        logger: logging.Logger,
        *,
        database: Path | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.socket_path, found = locate(socket_path)
        self.database = database or found
        self.logger = logger
        self.retry_seconds = retry_seconds
        self._client = AsyncMusicdClient(self.socket_path)
        self._up = False
        self._next_try = 0.0
        self._warned = False
        # Writes made while the daemon was away, in order: ("put", entry), ("invalidate",
        # albums), ("clear", None).
        self.pending: list[tuple[str, Any]] = []
        # What those writes hide in the database file until they are sent.
        self._hidden: set[tuple[str, str]] = set()
        self._cleared = False
        self._refused_sources: set[str] = set()
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = asyncio.Lock()

    @property
    def up(self) -> bool:
        return self._up

    # -- reaching the daemon -------------------------------------------------------------------

    async def reach(self) -> bool:
        """Whether the daemon answers now; reconnects (sending what waits) when it is time."""
        if self._up:
            return True
        if time.monotonic() < self._next_try:
            return False
        try:
            await self._client.connect()
            # The daemon names its database: the file to read while it is away.
            status = await self._client.status()
            self.database = Path(status["database"]["path"])
            self._up = True
            await self._send_pending()
        except (DaemonError, OSError) as err:
            await self._client.aclose()
            self._away(err)
            return False
        if self._warned:
            self.logger.info("musicd answers again at %s", self.socket_path)
            self._warned = False
        return True

    def _away(self, err: BaseException) -> None:
        self._up = False
        self._next_try = time.monotonic() + self.retry_seconds
        if not self._warned:
            self._warned = True
            self.logger.warning("musicd is not answering: %s; %s", err, AWAY_MEANS)
        else:
            self.logger.debug("musicd still away: %s", err)

    async def call(self, request: Callable[[AsyncMusicdClient], Awaitable[T]]) -> T:
        """One request to the daemon; DaemonAway when none answers (RemoteError passes)."""
        if not await self.reach():
            raise DaemonAway
        try:
            return await request(self._client)
        except RemoteError:
            raise
        except (DaemonError, OSError) as err:
            await self._client.aclose()
            self._away(err)
            raise DaemonAway from None

    async def close(self) -> None:
        await self._client.aclose()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- writes --------------------------------------------------------------------------------

    async def put(self, entry: dict[str, Any]) -> None:
        """Store an answer, now or when the daemon is back. A source the daemon refuses is
        kept in this program's memory only, with one warning per source."""
        try:
            await self.call(lambda c: c.cache_put(**entry))
        except DaemonAway:
            self._queue("put", entry)
        except RemoteError as err:
            self._refused(entry, err)

    async def invalidate(self, albums: Albums) -> None:
        async def send(client: AsyncMusicdClient) -> None:
            for start in range(0, len(albums), BATCH):
                await client.invalidate_many(albums[start : start + BATCH])

        try:
            await self.call(send)
        except DaemonAway:
            self._queue("invalidate", list(albums))

    async def clear(self) -> int:
        try:
            return await self.call(lambda c: c.cache_clear())
        except DaemonAway:
            self._queue("clear", None)
            return 0

    def _queue(self, kind: str, item: Any) -> None:
        self.pending.append((kind, item))
        if kind == "invalidate":
            self._hidden.update(album_key(artist, album) for artist, album in item)
        elif kind == "clear":
            self._cleared = True
        elif kind == "put":
            self._hidden.discard(album_key(item["artist"], item["album"]))

    def _refused(self, entry: dict[str, Any], err: RemoteError) -> None:
        # Once per source: a host asks the same source about thousands of albums.
        source = entry["source"]
        fix = (
            " (add the source to cache.sources in musicd's config)" if "source" in str(err) else ""
        )
        if source not in self._refused_sources:
            self._refused_sources.add(source)
            self.logger.warning(
                "musicd refused an answer from %s for %s - %s: %s; it is kept for this run only%s",
                source,
                entry["artist"],
                entry["album"],
                err,
                fix,
            )

    async def _send_pending(self) -> None:
        waiting, self.pending = self.pending, []
        for kind, item in waiting:
            if kind == "put":
                try:
                    await self._client.cache_put(**item)
                except RemoteError as err:
                    self._refused(item, err)
            elif kind == "invalidate":
                for start in range(0, len(item), BATCH):
                    await self._client.invalidate_many(item[start : start + BATCH])
            else:
                await self._client.cache_clear()
        self._hidden.clear()
        self._cleared = False
        if waiting:
            self.logger.info("Sent %d writes kept while musicd was away", len(waiting))

    # -- reads ---------------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[Key]) -> list[dict[str, Any] | None]:
        """The daemon's entries for the keys, in order; from the database file while away."""

        async def ask(client: AsyncMusicdClient) -> list[dict[str, Any] | None]:
            found: list[dict[str, Any] | None] = []
            size = BATCH
            while len(found) < len(keys):
                chunk = keys[len(found) : len(found) + size]
                try:
                    found += await client.cache_get_many(chunk)
                except RemoteError as err:
                    # Big answers: the daemon bounds an answer's bytes and says how many of
                    # these keys fit, so the rest go in further calls (never a miss).
                    fits = _keys_that_fit(err)
                    if fits is None:
                        raise
                    if fits == 0:
                        found.append(await client.cache_get(*chunk[0]))
                    size = max(fits, 1)
            return found

        try:
            return await self.call(ask)
        except DaemonAway:
            return await self._read_file(keys)

    async def _read_file(self, keys: Sequence[Key]) -> list[dict[str, Any] | None]:
        if self._cleared or not self.database.exists():
            return [None] * len(keys)
        async with self._reader_lock:
            try:
                return await asyncio.to_thread(self._read_rows, keys)
            except sqlite3.Error as err:
                self.logger.debug("musicd's database is not readable: %s", err)
                return [None] * len(keys)

    def _read_rows(self, keys: Sequence[Key]) -> list[dict[str, Any] | None]:
        if self._reader is None:
            self._reader = connect(self.database, read_only=True)
        now, hidden = time.time(), self._hidden
        found: list[dict[str, Any] | None] = []
        for artist, album, source in keys:
            entry = None
            if album_key(artist, album) not in hidden:
                entry = cache.get(self._reader, artist, album, source, now)
            found.append(None if entry is None else entry.to_dict())
        return found

    def file_counts(self) -> tuple[int, int] | None:
        """(successful, failed) live entries in the database file, read-only; None without
        one. A local read of a few milliseconds, never a wait for the daemon."""
        if not self.database.exists():
            return None
        try:
            with reading(self.database, read_only=True) as conn:
                counts = cache.counts(conn, time.time())
        except sqlite3.Error:
            return None
        return sum(ok for ok, _ in counts.values()), sum(bad for _, bad in counts.values())
