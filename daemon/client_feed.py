"""The calls for programs that use musicd, shared by both clients: changes since a position,
named cursors, the library page by page, and batch cache calls.

    with MusicdClient() as musicd:
        batch = musicd.changes_since(consumer="year-updater")
        if batch["resync"]:
            for page in musicd.iter_track_pages():
                ...  # apply page["tracks"]; page["cursor"] of the first page is where to follow
        for batch in musicd.iter_changes(consumer="year-updater"):
            ...  # apply batch["events"], then:
            musicd.cursor_commit("year-updater", batch["cursor"])

A batch of `iter_changes` may say `resync: true` (only the first can): the position could not be
followed; read the library with `iter_track_pages` and follow from the cursor it gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

Json = dict[str, Any]
Key = tuple[str, str, str]


def _changes_params(
    cursor: str | None, consumer: str | None, limit: int | None, types: Iterable[str] | None
) -> Json:
    params: Json = {}
    if consumer is not None:
        params["consumer"] = consumer
    else:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = limit
    if types is not None:
        params["types"] = list(types)
    return params


def _list_params(after: str | None, limit: int | None, fields: Iterable[str] | None) -> Json:
    params: Json = {"after": after}
    if limit is not None:
        params["limit"] = limit
    if fields is not None:
        params["fields"] = list(fields)
    return params


def _keys(keys: Iterable[Key | Json]) -> list[Json]:
    return [
        k if isinstance(k, dict) else {"artist": k[0], "album": k[1], "source": k[2]} for k in keys
    ]


class FeedCalls:
    """Mixed into MusicdClient (which provides `call`)."""

    def call(self, method: str, /, **params: Any) -> Any:
        raise NotImplementedError

    def changes_since(
        self,
        cursor: str | None = None,
        *,
        consumer: str | None = None,
        limit: int | None = None,
        types: Iterable[str] | None = None,
    ) -> Json:
        """The events after `cursor` (or after consumer's committed cursor), at most `limit`."""
        result: Json = self.call("changes.since", **_changes_params(cursor, consumer, limit, types))
        return result

    def iter_changes(
        self,
        cursor: str | None = None,
        *,
        consumer: str | None = None,
        limit: int | None = None,
        types: Iterable[str] | None = None,
    ) -> Iterator[Json]:
        """`changes.since` batches until caught up (the last one has `more: false`).

        Commits nothing: commit `batch["cursor"]` once a batch is applied.
        """
        while True:
            batch = self.changes_since(cursor, consumer=consumer, limit=limit, types=types)
            yield batch
            if batch["resync"] or not batch["more"]:
                return
            cursor, consumer = batch["cursor"], None

    def cursor_get(self, consumer: str) -> Json:
        result: Json = self.call("cursor.get", consumer=consumer)
        return result

    def cursor_commit(self, consumer: str, cursor: str, *, force: bool = False) -> Json:
        """Store where `consumer` has got to; never backwards unless `force`."""
        result: Json = self.call("cursor.commit", consumer=consumer, cursor=cursor, force=force)
        return result

    def tracks_list(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        fields: Iterable[str] | None = None,
    ) -> Json:
        result: Json = self.call("tracks.list", **_list_params(after, limit, fields))
        return result

    def iter_track_pages(
        self, *, limit: int | None = None, fields: Iterable[str] | None = None
    ) -> Iterator[Json]:
        """Every page of `tracks.list`; the first page's `cursor` is where to follow changes."""
        after: str | None = None
        while True:
            page = self.tracks_list(after, limit=limit, fields=fields)
            yield page
            after = page["next"]
            if after is None:
                return

    def cache_get_many(self, keys: Iterable[Key | Json]) -> list[Json | None]:
        """Answers for (artist, album, source) keys, in order; None for a miss."""
        result: list[Json | None] = self.call("cache.get_many", keys=_keys(keys))
        return result

    def cache_put_many(self, entries: Sequence[Json]) -> Json:
        """Store entries (cache.put's params each) in one transaction: all, or none."""
        result: Json = self.call("cache.put_many", entries=list(entries))
        return result

    def cache_cleanup(self) -> int:
        """Drop expired entries now; returns how many."""
        return int(self.call("cache.cleanup")["removed"])


class AsyncFeedCalls:
    """Mixed into AsyncMusicdClient (which provides `call`)."""

    async def call(self, method: str, /, **params: Any) -> Any:
        raise NotImplementedError

    async def changes_since(
        self,
        cursor: str | None = None,
        *,
        consumer: str | None = None,
        limit: int | None = None,
        types: Iterable[str] | None = None,
    ) -> Json:
        result: Json = await self.call(
            "changes.since", **_changes_params(cursor, consumer, limit, types)
        )
        return result

    async def iter_changes(
        self,
        cursor: str | None = None,
        *,
        consumer: str | None = None,
        limit: int | None = None,
        types: Iterable[str] | None = None,
    ) -> AsyncIterator[Json]:
        while True:
            batch = await self.changes_since(cursor, consumer=consumer, limit=limit, types=types)
            yield batch
            if batch["resync"] or not batch["more"]:
                return
            cursor, consumer = batch["cursor"], None

    async def cursor_get(self, consumer: str) -> Json:
        result: Json = await self.call("cursor.get", consumer=consumer)
        return result

    async def cursor_commit(self, consumer: str, cursor: str, *, force: bool = False) -> Json:
        result: Json = await self.call(
            "cursor.commit", consumer=consumer, cursor=cursor, force=force
        )
        return result

    async def tracks_list(
        self,
        after: str | None = None,
        *,
        limit: int | None = None,
        fields: Iterable[str] | None = None,
    ) -> Json:
        result: Json = await self.call("tracks.list", **_list_params(after, limit, fields))
        return result

    async def iter_track_pages(
        self, *, limit: int | None = None, fields: Iterable[str] | None = None
    ) -> AsyncIterator[Json]:
        after: str | None = None
        while True:
            page = await self.tracks_list(after, limit=limit, fields=fields)
            yield page
            after = page["next"]
            if after is None:
                return

    async def cache_get_many(self, keys: Iterable[Key | Json]) -> list[Json | None]:
        result: list[Json | None] = await self.call("cache.get_many", keys=_keys(keys))
        return result

    async def cache_put_many(self, entries: Sequence[Json]) -> Json:
        result: Json = await self.call("cache.put_many", entries=list(entries))
        return result

    async def cache_cleanup(self) -> int:
        return int((await self.call("cache.cleanup"))["removed"])
