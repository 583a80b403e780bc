"""`musicd invalidate` and `musicd cache get|put|clear`: the daemon's API response cache.

A cached answer that is not there is exit status 1 (after `null` with --json), so a script can
test for it like grep.
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson

import daemon.cli.format as fmt
from daemon.cli.command import (
    Output,
    Subcommands,
    UsageError,
    add_client_command,
    add_group,
    connect,
    parse_json,
)
from daemon.models import DEFAULT_SOURCES

ARTIST_HELP = "the album's artist (as the library has it; case and accents are ignored)"
ALBUM_HELP = "the album's name"
_SOURCE_HELP = (
    f"the API the answer came from: {', '.join(DEFAULT_SOURCES)}, or one added with "
    "cache.sources in the config"
)


def add_album_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artist", help=ARTIST_HELP)
    parser.add_argument("album", help=ALBUM_HELP)


def register(sub: Subcommands) -> None:
    """Add `invalidate` and `cache` to the `musicd` parser."""
    inval = add_client_command(
        sub, "invalidate", "drop the cached answers of an album", cmd_invalidate
    )
    add_album_args(inval)

    cache_sub = add_group(
        sub, "cache", "read and write the API response cache", actions_help="get, put or clear"
    )
    get = add_client_command(
        cache_sub,
        "get",
        "show the cached answer of an album from a source (exit status 1 when there is none)",
        cmd_cache_get,
    )
    put = add_client_command(
        cache_sub, "put", "store an answer for an album from a source", cmd_cache_put
    )
    for parser in (get, put):
        add_album_args(parser)
        parser.add_argument("source", help=_SOURCE_HELP)
    put.add_argument(
        "--failed", action="store_true", help="a failed lookup (kept for the retry TTL only)"
    )
    put.add_argument("--data", metavar="JSON", help="the answer, as JSON (default null)")
    put.add_argument("--metadata", metavar="JSON", help="a JSON object stored with it")
    add_client_command(cache_sub, "clear", "drop every cached answer", cmd_cache_clear)


def cmd_invalidate(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        removed = client.invalidate(args.artist, args.album)

    def show(_: Any) -> None:
        print(f"dropped {fmt.plural(removed, 'cached answer')} of {args.artist} - {args.album}")

    return Output({"removed": removed}, show)


def cmd_cache_get(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        entry = client.cache_get(args.artist, args.album, args.source)
    missing = f"no cached answer for {args.artist} - {args.album} from {args.source}"
    return Output(entry, show_entry, not_found=missing if entry is None else None)


def show_entry(entry: dict[str, Any]) -> None:
    outcome = "answer" if entry["success"] else "failed lookup"
    expires = f", expires {fmt.when(entry['expires_at'])}" if entry["expires_at"] else ""
    print(
        f"{entry['source']} {outcome} for {entry['artist']} - {entry['album']}, stored "
        f"{fmt.when(entry['created_at'])}{expires}"
    )
    print(f"  data      {orjson.dumps(entry['data']).decode()}")
    if entry["metadata"]:
        print(f"  metadata  {orjson.dumps(entry['metadata']).decode()}")


def cmd_cache_put(args: argparse.Namespace) -> Output:
    data = parse_json("--data", args.data)
    metadata = parse_json("--metadata", args.metadata)
    if metadata is not None and not isinstance(metadata, dict):
        raise UsageError("--metadata must be a JSON object")
    with connect(args) as client:
        entry = client.cache_put(
            args.artist,
            args.album,
            args.source,
            success=not args.failed,
            data=data,
            metadata=metadata,
        )
    return Output(entry, show_stored)


def show_stored(entry: dict[str, Any]) -> None:
    outcome = "answer" if entry["success"] else "failed lookup"
    print(f"stored {entry['source']} {outcome} for {entry['artist']} - {entry['album']}")


def cmd_cache_clear(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        removed = client.cache_clear()
    return Output(
        {"removed": removed}, lambda _: print(f"dropped {fmt.plural(removed, 'cached answer')}")
    )
