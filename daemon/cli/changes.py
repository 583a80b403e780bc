"""`musicd changes`, `musicd tracks list` and `musicd cursor get|commit`: the change feed and the
library as a program that was not running sees them.

Output is one line per event or track for people, one JSON object per line with --json; with
--json the last line is the position (`{"cursor": ..., "resync": ..., "reason": ...}` or
`{"next": ..., "cursor": ...}`), which has no `type`, so a script tells it from an event.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from daemon.cli.control import UsageError, add_client_command, describe_event
from daemon.client import MusicdClient
from daemon.events import EVENT_TYPES

Handler = Callable[[argparse.Namespace], int]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add `changes` and `cursor` to the `musicd` parser, and `list` to `musicd tracks`."""

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help_text: str,
        handler: Handler,
    ) -> argparse.ArgumentParser:
        return add_client_command(
            parent,
            name,
            help_text,
            handler,
            add_config_arg=add_config_arg,
            timeout=60.0,
            json_help="print JSON lines for scripts",
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
    changes.add_argument(
        "--type",
        dest="types",
        action="append",
        choices=EVENT_TYPES,
        metavar="TYPE",
        help=f"only these event types (repeatable): {', '.join(EVENT_TYPES)}",
    )
    changes.add_argument("--limit", type=int, default=1000, help="events per request (1-10000)")

    cursor = sub.add_parser(
        "cursor",
        help="read and move a consumer's durable cursor",
        description="A program's position in the change journal, kept by the daemon under a "
        "name of the program's choosing (1-200 characters, not starting with 'musicd.').",
    )
    cursor_sub = cursor.add_subparsers(
        dest="cursor_command", metavar="ACTION", required=True, help="get or commit"
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

    tracks = _subcommands(sub, "tracks")
    listing = command(tracks, "list", "list the library's tracks, page by page", cmd_tracks_list)
    listing.add_argument("--after", metavar="ID", help="start after this persistent id")
    listing.add_argument("--limit", type=int, default=1000, help="tracks per page (1-10000)")
    listing.add_argument("--all", action="store_true", help="every page, not only the first")
    listing.add_argument(
        "--field", dest="fields", action="append", metavar="NAME", help="only these fields"
    )


def _subcommands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The ACTION subparsers of an existing command (`musicd tracks`), made here if missing."""
    parser = sub.choices.get(name) or sub.add_parser(name, help=f"{name} commands")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def _client(args: argparse.Namespace, timeout: float | None = None) -> MusicdClient:
    if args.socket:
        path = Path(args.socket).expanduser()
    else:
        from daemon.config import load_config

        path = load_config(args.config).control.socket
    return MusicdClient(path, timeout=timeout if timeout is not None else args.timeout)


def _line(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()


def _event(args: argparse.Namespace, event: dict[str, Any]) -> None:
    if args.json:
        _line(event)
    else:
        print(f"{describe_event(event)}  [{event['cursor']}]", flush=True)


def cmd_changes(args: argparse.Namespace) -> int:
    if args.commit and (args.consumer is None or args.follow):
        raise UsageError("--commit needs --consumer, and does not go with --follow")
    if not 1 <= args.limit <= 10000:
        raise UsageError("--limit must be between 1 and 10000")
    with _client(args) as client:
        last: dict[str, Any] = {}
        for batch in client.iter_changes(
            args.since, consumer=args.consumer, limit=args.limit, types=args.types
        ):
            for event in batch["events"]:
                _event(args, event)
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
                _line(position)
            else:
                print(f"musicd: up to date at {last['cursor']}", file=sys.stderr)
            return 0
    try:
        with _client(args, timeout=args.timeout) as client:
            for event in client.subscribe(args.types, since=last["cursor"]):
                _event(args, event)
    except KeyboardInterrupt:
        return 0
    print("musicd: the daemon closed the connection (it stopped)", file=sys.stderr)
    return 1


def cmd_cursor_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.cursor_get(args.consumer)
    if args.json:
        _line(result)
    elif result["cursor"] is None:
        print(f"{args.consumer} has not committed a cursor")
    else:
        print(f"{args.consumer} at {result['cursor']} ({result['behind']} events behind)")
    return 0


def cmd_cursor_commit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.cursor_commit(args.consumer, args.cursor, force=args.force)
    if args.json:
        _line(result)
    elif result["committed"]:
        print(f"{args.consumer} now at {result['cursor']}")
    else:
        print(f"{args.consumer} stays at {result['cursor']}: {result['reason']}")
    return 0 if result["committed"] else 1


def cmd_tracks_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 10000:
        raise UsageError("--limit must be between 1 and 10000")
    after, cursor = args.after, None
    with _client(args) as client:
        while True:
            page = client.tracks_list(after, limit=args.limit, fields=args.fields)
            cursor = cursor or page["cursor"]
            for t in page["tracks"]:
                if args.json:
                    _line(t)
                else:
                    print(
                        f"{t['persistent_id']}  {t.get('artist')} - {t.get('name')}  "
                        f"({t.get('album')})"
                    )
            after = page["next"]
            if after is None or not args.all:
                break
    if args.json:
        _line({"next": after, "cursor": cursor})
    elif after is not None:
        print(f"musicd: more after {after} (--after {after}, or --all)", file=sys.stderr)
    else:
        print(f"musicd: follow changes from {cursor}", file=sys.stderr)
    return 0
