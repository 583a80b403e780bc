"""The cache as the daemon serves it, one home for every rule of its calls: which sources a
write may name and the read counters (sources.py's `Sources`, held here and nowhere else), the
get paths and the put paths.

`cache.put` and `cache.put_many` check each entry with the one `entry` rule, so both calls
refuse the same source with the same error. Point reads run on the event loop's read
connection, bulk ones through `BulkReads` (each in one read snapshot); every write goes through
the one `Writer` and is answered once committed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from daemon.config import Config
from daemon.models import album_key
from daemon.service.programs import BulkReads
from daemon.service.sources import Sources
from daemon.stores import cache
from daemon.stores.database import Database
from daemon.stores.writer import Writer


class EntryErrors(ValueError):
    """Some entries of a batch are invalid; nothing of the batch was stored."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} of the entries are invalid; nothing was stored")
        self.errors = errors


class AnswerTooLarge(ValueError):
    """A bulk answer would be over its byte bound; `fits` items of it would not."""

    def __init__(self, fits: int, max_bytes: int) -> None:
        super().__init__(f"the answer would be over {max_bytes} bytes after {fits} items")
        self.fits = fits
        self.max_bytes = max_bytes


def _array(parts: list[bytes]) -> orjson.Fragment:
    return orjson.Fragment(b"[" + b",".join(parts) + b"]")


@dataclass
class CacheApi:
    config: Config
    db: Database
    writer: Writer
    reads: BulkReads
    # The one Sources: what a write may name, and the read counters.
    sources: Sources

    # -- reads ---------------------------------------------------------------------------------

    def get(self, artist: str, album: str, source: str) -> dict[str, Any] | None:
        entry = cache.get(self.db.read_conn, artist, album, source, time.time())
        self.sources.count(source, hit=entry is not None)
        return entry.to_dict() if entry is not None else None

    async def get_many(
        self, keys: Sequence[tuple[str, str, str]], max_bytes: int
    ) -> orjson.Fragment:
        """The entries (null for a miss) in the keys' order, as JSON built off the event loop
        from the stored JSON text; AnswerTooLarge when they would be over `max_bytes`."""

        def read(conn: sqlite3.Connection) -> tuple[orjson.Fragment | int, list[bool]]:
            now = time.time()
            parts: list[bytes] = []
            found: list[bool] = []
            size = 0
            for artist, album, source in keys:
                part = cache.get_json(conn, artist, album, source, now)
                found.append(part is not None)
                parts.append(b"null" if part is None else part)
                size += len(parts[-1]) + 1
                if size > max_bytes:
                    # How many fit, not an exception: one raised here would keep this frame's
                    # megabytes alive in a reference cycle until a full collection.
                    return len(parts) - 1, found
            return _array(parts), found

        answer, found = await self.reads.run(read)
        for (_artist, _album, source), hit in zip(keys, found, strict=False):
            self.sources.count(source, hit=hit)
        if isinstance(answer, int):
            raise AnswerTooLarge(answer, max_bytes)
        return answer

    # -- writes --------------------------------------------------------------------------------

    def entry(self, params: Mapping[str, Any], now: float) -> cache.CacheEntry:
        """A checked entry from `cache.put`'s params, the one rule of `cache.put` and
        `cache.put_many`: UnknownSource for a source the configuration does not accept,
        ValueError/TypeError for a bad value."""
        return cache.make_entry(
            params["artist"],
            params["album"],
            self.sources.check(params["source"]),
            success=params["success"],
            data=params.get("data"),
            metadata=params.get("metadata"),
            now=now,
            failed_ttl_seconds=self.config.cache.failed_ttl_seconds,
            ttl_seconds=params.get("ttl_seconds"),
        )

    async def put(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Store one answer (`cache.put`'s params); returns it once committed. ValueError or
        TypeError as for `entry`."""
        entry = self.entry(params, time.time())
        await self.writer.submit(partial(cache.put_many, entries=[entry]))
        return entry.to_dict()

    async def put_many(self, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Store every entry in one transaction, or none: EntryErrors lists the bad ones, each
        with the error `put` would give it."""
        now = time.time()
        made: list[cache.CacheEntry] = []
        errors: list[dict[str, Any]] = []
        for index, params in enumerate(entries):
            try:
                made.append(self.entry(params, now))
            except (TypeError, ValueError) as err:
                errors.append({"index": index, "error": str(err)})
        if errors:
            raise EntryErrors(errors)
        await self.writer.submit(partial(cache.put_many, entries=made))
        return {"stored": len(made)}

    async def invalidate(self, albums: Sequence[tuple[str, str]]) -> int:
        """Drop every source's answers of the (artist, album) pairs in one transaction."""
        keys = sorted({album_key(artist, album) for artist, album in albums})
        return await self.writer.submit(partial(cache.invalidate_keys, keys=keys))

    async def clear(self) -> int:
        return await self.writer.submit(cache.clear)

    async def cleanup(self) -> int:
        """Drop expired entries now (maintenance does it every cleanup interval)."""
        removed: int = await self.writer.submit(partial(cache.cleanup_expired, now=time.time()))
        return removed

    # -- stats ---------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Cache counts (a GROUP BY over the table, off the loop) and the read counters."""
        counts, albums = await self.reads.run(
            lambda conn: (cache.counts(conn, time.time()), cache.album_count(conn))
        )
        by_source: dict[str, dict[str, int]] = {}
        hits, misses = self.sources.hits, self.sources.misses
        for src in sorted(counts.keys() | self.sources.counted()):
            ok, failed = counts.get(src, (0, 0))
            by_source[src] = {
                "entries": ok + failed,
                "successful": ok,
                "failed": failed,
                "hits": hits[src],
                "misses": misses[src],
            }
        successful = sum(c[0] for c in counts.values())
        failed = sum(c[1] for c in counts.values())
        return {
            "total_entries": successful + failed,
            "successful": successful,
            "failed": failed,
            "albums": albums,
            "by_source": by_source,
            "hits": sum(hits.values()),
            "misses": sum(misses.values()),
            "cache_file": str(self.db.path),
            "cache_file_exists": self.db.path.exists(),
            "persistent": True,
            "policies": {
                "successful": "kept until invalidated",
                "failed_ttl_seconds": self.config.cache.failed_ttl_seconds,
            },
        }
