"""The control methods for programs that use musicd: `changes.since`, `cursor.get`,
`cursor.commit`, `tracks.list`, `cache.get_many`, `cache.put_many` and `cache.cleanup`.

`subscribe(since=...)` belongs to a connection and lives in replay.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from daemon.control.api import DaemonApi
from daemon.control.methods import Handlers, Reply, handles
from daemon.control.params import (
    CacheGetManyParams,
    CachePutManyParams,
    CachePutParams,
    ChangesSinceParams,
    CursorCommitParams,
    CursorGetParams,
    NoParams,
    TracksListParams,
)
from daemon.control.protocol import (
    ANSWER_TOO_LARGE,
    INVALID_PARAMS,
    MAX_ANSWER_BYTES,
    ProtocolError,
    describe_params_error,
    json_type,
)
from daemon.journal.feed import CursorError
from daemon.service.programs import AnswerTooLarge, EntryErrors


def _cursor_error(method: str, err: CursorError) -> ProtocolError:
    return ProtocolError(INVALID_PARAMS, f"{method}: param 'cursor' is invalid: {err}")


def check_entries(entries: list[Any]) -> list[dict[str, Any]]:
    """Each `cache.put_many` entry checked like `cache.put`'s params; ProtocolError naming
    every bad one (in `data`: index and reason) when any is bad."""
    good: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            errors.append({"index": index, "error": f"must be an object, not {json_type(entry)}"})
            continue
        try:
            good.append(dict(CachePutParams.model_validate(entry)))
        except ValidationError as err:
            text = describe_params_error("entry", CachePutParams, err).removeprefix("entry: ")
            errors.append({"index": index, "error": text})
    if errors:
        raise _entries_refused(errors)
    return good


def _entries_refused(errors: list[dict[str, Any]]) -> ProtocolError:
    first = errors[0]
    return ProtocolError(
        INVALID_PARAMS,
        f"cache.put_many: {len(errors)} invalid entr{'y' if len(errors) == 1 else 'ies'}, "
        f"nothing was stored; entry {first['index']}: {first['error']}",
        {"errors": errors},
    )


class ProgramMethods(Handlers):
    def __init__(self, daemon: DaemonApi) -> None:
        self.daemon = daemon

    @handles("changes.since")
    async def changes_since(self, params: ChangesSinceParams) -> Reply:
        try:
            result = await self.daemon.programs.changes_since(
                params.cursor,
                consumer=params.consumer,
                limit=params.limit,
                types=params.types,
                max_bytes=MAX_ANSWER_BYTES,
            )
        except CursorError as err:
            raise _cursor_error("changes.since", err) from None
        if result["resync"]:
            return Reply(
                result,
                log={"consumer": params.consumer, "resync": True, "reason": result["reason"]},
            )
        return Reply(result)

    @handles("cursor.get")
    async def cursor_get(self, params: CursorGetParams) -> Reply:
        return Reply(self.daemon.programs.cursor_get(params.consumer))

    @handles("cursor.commit")
    async def cursor_commit(self, params: CursorCommitParams) -> Reply:
        try:
            result = await self.daemon.programs.cursor_commit(
                params.consumer, params.cursor, force=params.force
            )
        except CursorError as err:
            raise _cursor_error("cursor.commit", err) from None
        return Reply(
            result,
            log={
                "consumer": params.consumer,
                "cursor": result["cursor"],
                "moved": result["committed"],
                "forced": params.force,
            },
        )

    @handles("tracks.list")
    async def tracks_list(self, params: TracksListParams) -> Reply:
        return Reply(
            await self.daemon.programs.tracks_list(
                params.after,
                params.limit,
                params.fields,
                MAX_ANSWER_BYTES,
                by=params.by,
                ids=params.ids or (),
            )
        )

    @handles("cache.get_many")
    async def cache_get_many(self, params: CacheGetManyParams) -> Reply:
        keys = [(k.artist, k.album, k.source) for k in params.keys]
        try:
            return Reply(await self.daemon.programs.cache_get_many(keys, MAX_ANSWER_BYTES))
        except AnswerTooLarge as err:
            raise ProtocolError(
                ANSWER_TOO_LARGE,
                f"cache.get_many: the answer would be over {err.max_bytes} bytes; only the "
                f"first {err.fits} of the {len(keys)} keys fit, ask for the rest in further calls",
                {"fits": err.fits, "max_bytes": err.max_bytes},
            ) from None

    @handles("cache.put_many")
    async def cache_put_many(self, params: CachePutManyParams) -> Reply:
        entries = check_entries(params.entries)
        try:
            result = await self.daemon.programs.cache_put_many(entries)
        except EntryErrors as err:
            raise _entries_refused(err.errors) from None
        return Reply(result)

    @handles("cache.cleanup")
    async def cache_cleanup(self, params: NoParams) -> Reply:
        removed = await self.daemon.programs.cache_cleanup()
        return Reply({"removed": removed}, log={"entries": removed})
