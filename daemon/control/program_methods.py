"""The control methods for programs that use musicd: `changes.since`, `cursor.get`,
`cursor.commit`, `tracks.list`, `cache.get_many`, `cache.put_many`, `cache.cleanup` and
`writes.expect`.

Handlers as in methods.py. `subscribe(since=...)` belongs to a connection and lives in
subscriptions.py (its replay in replay.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from daemon.control.methods import Context, Reply
from daemon.control.params import (
    CacheGetManyParams,
    CachePutManyParams,
    CachePutParams,
    ChangesSinceParams,
    CursorCommitParams,
    CursorGetParams,
    NoParams,
    TracksListParams,
    WritesExpectParams,
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
from daemon.service.cache_api import AnswerTooLarge, EntryErrors
from daemon.service.programs import WritesRefused


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


async def changes_since(ctx: Context, params: ChangesSinceParams) -> Reply:
    """Answers {events, cursor, more, resync, reason}, and last_seq unless resync."""
    try:
        result = await ctx.daemon.programs.changes_since(
            params.cursor,
            consumer=params.consumer,
            limit=params.limit,
            types=params.types,
            max_bytes=MAX_ANSWER_BYTES,
            exclude_origins=params.exclude_origins or (),
        )
    except CursorError as err:
        raise _cursor_error("changes.since", err) from None
    if result["resync"]:
        return Reply(
            result,
            log={"consumer": params.consumer, "resync": True, "reason": result["reason"]},
        )
    return Reply(result)


async def cursor_get(ctx: Context, params: CursorGetParams) -> Reply:
    """Answers {consumer, cursor, updated_at, behind}."""
    return Reply(ctx.daemon.programs.cursor_get(params.consumer))


async def cursor_commit(ctx: Context, params: CursorCommitParams) -> Reply:
    """Answers {consumer, committed, cursor, previous, reason}."""
    try:
        result = await ctx.daemon.programs.cursor_commit(
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


async def tracks_list(ctx: Context, params: TracksListParams) -> Reply:
    """Answers {tracks, next, cursor, building}."""
    return Reply(
        await ctx.daemon.programs.tracks_list(
            params.after,
            params.limit,
            params.fields,
            MAX_ANSWER_BYTES,
            by=params.by,
            ids=params.ids or (),
        )
    )


async def cache_get_many(ctx: Context, params: CacheGetManyParams) -> Reply:
    """Answers [cache entry or null], in the keys' order."""
    keys = [(k.artist, k.album, k.source) for k in params.keys]
    try:
        return Reply(await ctx.daemon.cache.get_many(keys, MAX_ANSWER_BYTES))
    except AnswerTooLarge as err:
        raise ProtocolError(
            ANSWER_TOO_LARGE,
            f"cache.get_many: the answer would be over {err.max_bytes} bytes; only the "
            f"first {err.fits} of the {len(keys)} keys fit, ask for the rest in further calls",
            {"fits": err.fits, "max_bytes": err.max_bytes},
        ) from None


async def cache_put_many(ctx: Context, params: CachePutManyParams) -> Reply:
    """Answers {stored}."""
    entries = check_entries(params.entries)
    try:
        result = await ctx.daemon.cache.put_many(entries)
    except EntryErrors as err:
        raise _entries_refused(err.errors) from None
    return Reply(result)


async def cache_cleanup(ctx: Context, params: NoParams) -> Reply:
    """Answers {removed}."""
    removed = await ctx.daemon.cache.cleanup()
    return Reply({"removed": removed}, log={"entries": removed})


async def writes_expect(ctx: Context, params: WritesExpectParams) -> Reply:
    """Answers {expected}."""
    tracks = [(*t.lookup(), t.fields) for t in params.tracks]
    try:
        expected = await ctx.daemon.programs.expect_writes(
            params.origin, tracks, ttl_seconds=params.ttl_seconds
        )
    except WritesRefused as err:
        raise ProtocolError(INVALID_PARAMS, f"writes.expect: {err}") from None
    return Reply({"expected": expected}, log={"origin": params.origin, "tracks": expected})
