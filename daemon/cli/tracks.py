"""`musicd tracks get|album|list`: the library snapshot, as the daemon holds it.

`get` and `album` are lookups (exit status 1 when nothing matches, after the JSON with --json);
`list` pages through the whole library, one JSON object per line with --json, and ends with the
position to follow changes from (`{"next": ..., "cursor": ...}`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from daemon.cli.cache import add_album_args
from daemon.cli.command import (
    Output,
    Subcommands,
    add_client_command,
    add_group,
    check_limit,
    connect,
    print_json,
)


def register(sub: Subcommands) -> None:
    """Add `musicd tracks …` to the `musicd` parser."""
    tracks_sub = add_group(
        sub, "tracks", "look up tracks in the library snapshot", actions_help="get or album"
    )
    track = add_client_command(tracks_sub, "get", "show one track by persistent id", cmd_track)
    track.add_argument(
        "persistent_id", metavar="ID", help="the track's Persistent ID (hex; any case)"
    )
    album = add_client_command(tracks_sub, "album", "list the tracks of an album", cmd_album)
    add_album_args(album)
    listing = add_client_command(
        tracks_sub,
        "list",
        "list the library's tracks, page by page",
        cmd_tracks_list,
        timeout=60.0,
        json_help="print JSON lines for scripts",
    )
    listing.add_argument("--after", metavar="ID", help="start after this persistent id")
    listing.add_argument("--limit", type=int, default=1000, help="tracks per page (1-10000)")
    listing.add_argument("--all", action="store_true", help="every page, not only the first")
    listing.add_argument(
        "--field", dest="fields", action="append", metavar="NAME", help="only these fields"
    )


def cmd_track(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        track = client.track(args.persistent_id)
    missing = f"no track with persistent id {args.persistent_id} in the snapshot"
    return Output(track, show_track, not_found=missing if track is None else None)


def show_track(track: dict[str, Any]) -> None:
    width = max(len(k) for k in track)
    for key, value in track.items():
        if value is not None:
            print(f"{key:<{width}}  {value}")


def cmd_album(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        tracks = client.album_tracks(args.artist, args.album)
    missing = f"no tracks of {args.artist} - {args.album} in the snapshot"
    return Output(tracks, show_album, not_found=None if tracks else missing)


def show_album(tracks: list[dict[str, Any]]) -> None:
    for t in tracks:
        number = f"{t['disc_number'] or 1}-{t['track_number'] or 0:02d}"
        print(f"{number}  {t['name']}  ({t['artist']})  {t['persistent_id']}")


def cmd_tracks_list(args: argparse.Namespace) -> int:
    check_limit(args.limit)
    after, cursor = args.after, None
    with connect(args) as client:
        while True:
            page = client.tracks_list(after, limit=args.limit, fields=args.fields)
            cursor = cursor or page["cursor"]
            for t in page["tracks"]:
                if args.json:
                    print_json(t, line=True)
                else:
                    print(
                        f"{t['persistent_id']}  {t.get('artist')} - {t.get('name')}  "
                        f"({t.get('album')})"
                    )
            after = page["next"]
            if after is None or not args.all:
                break
    if args.json:
        print_json({"next": after, "cursor": cursor}, line=True)
    elif after is not None:
        print(f"musicd: more after {after} (--after {after}, or --all)", file=sys.stderr)
    else:
        print(f"musicd: follow changes from {cursor}", file=sys.stderr)
    return 0
