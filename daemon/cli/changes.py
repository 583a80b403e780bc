"""`musicd subscribe`, `musicd changes` and `musicd cursor get|commit`: the change feed, live and
as a program that was not running sees it.

Output is one line per event for people, one JSON object per line with --json; with --json the
last line of `changes` is the position (`{"cursor": ..., "resync": ..., "reason": ...}`), which
has no `type`, so a script tells it from an event.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from typing import Any

from daemon.cli.command import (
    Handler,
    Output,
    Subcommands,
    UsageError,
    add_client_command,
    add_group,
    check_limit,
    connect,
    print_json,
)
from daemon.client import MusicdClient
from daemon.events import EVENT_TYPES

_TYPE_HELP = f"only these event types (repeatable): {', '.join(EVENT_TYPES)}"


def register(sub: Subcommands) -> None:
    """Add `subscribe`, `changes` and `cursor` to the `musicd` parser."""
    subscribe = add_client_command(
        sub, "subscribe", "print events as they happen, one per line (Ctrl-C stops)", cmd_subscribe
    )
    _add_type_arg(subscribe)

    def command(
        parent: Subcommands, name: str, help_text: str, handler: Handler
    ) -> argparse.ArgumentParser:
        return add_client_command(
            parent, name, help_text, handler, timeout=60.0, json_help="print JSON lines for scripts"
        )

    changes = command(
        sub,
        "changes",
        "print the changes since a position (a cursor, or a consumer's)",
        cmd_changes,
    )
    where = changes.add_mutually_exclusive_group()
    where.add_argument("--since", metavar="CURSOR", help="the position to read after")
    where.add_argument("--consumer", metavar="NAME", help="read after NAME's committed cursor")
    changes.add_argument(
        "--follow", action="store_true", help="then go on printing changes as they happen"
    )
    changes.add_argument(
        "--commit", action="store_true", help="with --consumer: commit the position reached"
    )
    _add_type_arg(changes)
    changes.add_argument(
        "--exclude-origin",
        dest="exclude_origins",
        action="append",
        metavar="NAME",
        help="leave out the changes program NAME announced as its own writes (repeatable)",
    )
    changes.add_argument("--limit", type=int, default=1000, help="events per request (1-10000)")

    cursor_sub = add_group(
        sub,
        "cursor",
        "read and move a consumer's durable cursor",
        actions_help="get or commit",
        description="A program's position in the change journal, kept by the daemon under a "
        "name of the program's choosing (1-200 characters, not starting with 'musicd.').",
    )
    name_help = "the consumer's name, e.g. year-updater"
    get = command(cursor_sub, "get", "show a consumer's committed cursor", cmd_cursor_get)
    get.add_argument("consumer", metavar="NAME", help=name_help)
    commit = command(cursor_sub, "commit", "store a consumer's position", cmd_cursor_commit)
    commit.add_argument("consumer", metavar="NAME", help=name_help)
    commit.add_argument(
        "cursor", metavar="CURSOR", help="the position to store (a `cursor` musicd gave out)"
    )
    commit.add_argument("--force", action="store_true", help="move it backwards too")


def _add_type_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        choices=EVENT_TYPES,
        metavar="TYPE",
        help=_TYPE_HELP,
    )


def _print_event(args: argparse.Namespace, event: dict[str, Any], *, cursor: bool) -> None:
    if args.json:
        print_json(event, line=True)
    elif cursor:
        print(f"{describe_event(event)}  [{event['cursor']}]", flush=True)
    else:
        print(describe_event(event), flush=True)


def _print_live(
    args: argparse.Namespace,
    client: MusicdClient,
    events: Iterable[dict[str, Any]],
    *,
    cursor: bool,
) -> int:
    """Print live events until the daemon closes the connection (1) or Ctrl-C (0)."""
    try:
        with client:
            for event in events:
                _print_event(args, event, cursor=cursor)
    except KeyboardInterrupt:
        return 0
    print("musicd: the daemon closed the connection (it stopped)", file=sys.stderr)
    return 1


def cmd_changes(args: argparse.Namespace) -> int:
    if args.commit and (args.consumer is None or args.follow):
        raise UsageError("--commit needs --consumer, and does not go with --follow")
    check_limit(args.limit)
    with connect(args) as client:
        last: dict[str, Any] = {}
        for batch in client.iter_changes(
            args.since,
            consumer=args.consumer,
            limit=args.limit,
            types=args.types,
            exclude_origins=args.exclude_origins,
        ):
            for event in batch["events"]:
                _print_event(args, event, cursor=True)
            last = batch
        position = {"cursor": last["cursor"], "resync": last["resync"], "reason": last["reason"]}
        if last["resync"] and (args.since is not None or args.consumer is not None):
            print(
                f"musicd: resync needed: {last['reason']}; read the library ('musicd tracks list "
                f"--all') and follow from {last['cursor']}",
                file=sys.stderr,
            )
        if args.commit and not last["resync"]:
            client.cursor_commit(args.consumer, last["cursor"])
        if not args.follow:
            if args.json:
                print_json(position, line=True)
            else:
                print(f"musicd: up to date at {last['cursor']}", file=sys.stderr)
            return 0
    client = connect(args)
    live = client.subscribe(args.types, since=last["cursor"], exclude_origins=args.exclude_origins)
    return _print_live(args, client, live, cursor=True)


def cmd_cursor_get(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        result = client.cursor_get(args.consumer)

    def show(_: Any) -> None:
        if result["cursor"] is None:
            print(f"{args.consumer} has not committed a cursor")
        else:
            print(f"{args.consumer} at {result['cursor']} ({result['behind']} events behind)")

    return Output(result, show, json_line=True)


def cmd_cursor_commit(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        result = client.cursor_commit(args.consumer, args.cursor, force=args.force)

    def show(_: Any) -> None:
        if result["committed"]:
            print(f"{args.consumer} now at {result['cursor']}")
        else:
            print(f"{args.consumer} stays at {result['cursor']}: {result['reason']}")

    return Output(result, show, status=0 if result["committed"] else 1, json_line=True)


def cmd_subscribe(args: argparse.Namespace) -> int:
    client = connect(args)
    return _print_live(args, client, client.subscribe(args.types), cursor=False)


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for an event; a track event a program announced says whose it is."""
    line = _describe(event)
    origin = event.get("origin")
    return line if origin is None else f"{line}  (by {origin})"


def _describe(event: dict[str, Any]) -> str:
    kind = event.get("type", "?")
    head = f"{time.strftime('%H:%M:%S')} #{event.get('seq')} {kind}"
    if kind == "track_modified":
        track = event.get("track", {})
        name = f"{track.get('artist') or '?'} - {track.get('name') or '?'}"
        changes = "; ".join(
            f"{field}: {event['old'].get(field)!r} -> {event['new'].get(field)!r}"
            for field in event.get("changed", [])
        )
        return f"{head} {event.get('persistent_id')} {name}: {changes}"
    if kind == "track_added":
        t = event.get("track", {})
        pid, artist, album = t.get("persistent_id"), t.get("artist"), t.get("album")
        return f"{head} {pid} {artist} - {t.get('name')} ({album})"
    if kind == "track_removed":
        return (
            f"{head} {event.get('persistent_id')} {event.get('artist')} - {event.get('name')} "
            f"({event.get('album')})"
        )
    rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "seq", "at"))
    return f"{head} {rest}".rstrip()
