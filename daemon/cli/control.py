"""`musicd status|stats|flush|rescan|stop|ping|invalidate|cache …|tracks …|subscribe`.

Every command talks to the daemon's socket through the synchronous client; nothing here imports
anyio or the server, so these commands start fast. Output is for people by default and JSON
with --json. A daemon that is not running is one line and exit status 3.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from daemon import hints
from daemon.cli import format as fmt
from daemon.client import ClientTimeout, MusicdClient
from daemon.errors import EX_USAGE, DaemonError
from daemon.events import EVENT_TYPES
from daemon.models import DEFAULT_SOURCES

_ARTIST_HELP = "the album's artist (as the library has it; case and accents are ignored)"
_ALBUM_HELP = "the album's name"
_SOURCE_HELP = (
    f"the API the answer came from: {', '.join(DEFAULT_SOURCES)}, or one added with "
    "cache.sources in the config"
)

# `stop` waits this long for the daemon to drain, flush and exit (it needs about 5 s at most).
STOP_WAIT_SECONDS = 30.0
# Requests that may take long on a big library (a full read, a big write).
SLOW_TIMEOUT_SECONDS = 600.0


class UsageError(DaemonError):
    code = "usage_error"
    exit_status = EX_USAGE


class NotFound(DaemonError):
    """A lookup found nothing: exit status 1, like grep, so scripts can test for it."""

    code = "not_found"
    exit_status = 1


def add_client_command(
    parent: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    add_config_arg: Callable[[argparse.ArgumentParser], None],
    timeout: float = 30.0,
    json_help: str = "print JSON for scripts",
) -> argparse.ArgumentParser:
    """A subcommand that talks to the daemon: --config, --socket, --json and --timeout."""
    parser = parent.add_parser(name, help=help_text, description=help_text)
    add_config_arg(parser)
    parser.add_argument(
        "--socket", metavar="PATH", help="the daemon's socket (overrides the config)"
    )
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="SECONDS",
        help=f"how long to wait for an answer (default {timeout:g} s)",
    )
    parser.set_defaults(handler=handler)
    return parser


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the control commands to the `musicd` parser."""

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help_text: str,
        handler: Callable[[argparse.Namespace], int],
        timeout: float = 30.0,
    ) -> argparse.ArgumentParser:
        return add_client_command(
            parent, name, help_text, handler, add_config_arg=add_config_arg, timeout=timeout
        )

    command(sub, "status", "show what the daemon is doing", cmd_status)
    command(sub, "stats", "API cache and event counts since the daemon started", cmd_stats)
    command(sub, "ping", "check that the daemon answers", cmd_ping)
    command(
        sub,
        "flush",
        "make every acknowledged write durable against a power cut now (a checkpoint)",
        cmd_flush,
        SLOW_TIMEOUT_SECONDS,
    )
    rescan = command(sub, "rescan", "read the whole library now", cmd_rescan, SLOW_TIMEOUT_SECONDS)
    rescan.add_argument(
        "--accept-removals",
        action="store_true",
        help="apply a mass removal that is held for confirmation",
    )
    command(sub, "stop", "stop the daemon and wait until it is gone", cmd_stop)
    inval = command(sub, "invalidate", "drop the cached answers of an album", cmd_invalidate)
    inval.add_argument("artist", help=_ARTIST_HELP)
    inval.add_argument("album", help=_ALBUM_HELP)

    cache = sub.add_parser("cache", help="read and write the API response cache")
    cache_sub = cache.add_subparsers(
        dest="cache_command", metavar="ACTION", required=True, help="get, put or clear"
    )
    get = command(
        cache_sub,
        "get",
        "show the cached answer of an album from a source (exit status 1 when there is none)",
        cmd_cache_get,
    )
    put = command(cache_sub, "put", "store an answer for an album from a source", cmd_cache_put)
    for parser in (get, put):
        parser.add_argument("artist", help=_ARTIST_HELP)
        parser.add_argument("album", help=_ALBUM_HELP)
        parser.add_argument("source", help=_SOURCE_HELP)
    put.add_argument(
        "--failed", action="store_true", help="a failed lookup (kept for the retry TTL only)"
    )
    put.add_argument("--data", metavar="JSON", help="the answer, as JSON (default null)")
    put.add_argument("--metadata", metavar="JSON", help="a JSON object stored with it")
    command(cache_sub, "clear", "drop every cached answer", cmd_cache_clear)

    tracks = sub.add_parser("tracks", help="look up tracks in the library snapshot")
    tracks_sub = tracks.add_subparsers(
        dest="tracks_command", metavar="ACTION", required=True, help="get or album"
    )
    track = command(tracks_sub, "get", "show one track by persistent id", cmd_track)
    track.add_argument(
        "persistent_id", metavar="ID", help="the track's Persistent ID (hex; any case)"
    )
    album = command(tracks_sub, "album", "list the tracks of an album", cmd_album)
    album.add_argument("artist", help=_ARTIST_HELP)
    album.add_argument("album", help=_ALBUM_HELP)

    subscribe = command(
        sub, "subscribe", "print events as they happen, one per line (Ctrl-C stops)", cmd_subscribe
    )
    subscribe.add_argument(
        "--type",
        dest="types",
        action="append",
        choices=EVENT_TYPES,
        metavar="TYPE",
        help=f"only these event types (repeatable): {', '.join(EVENT_TYPES)}",
    )


# -- plumbing -------------------------------------------------------------------------------


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket).expanduser()
    from daemon.config import load_config

    return load_config(args.config).control.socket


def _client(args: argparse.Namespace) -> MusicdClient:
    return MusicdClient(_socket_path(args), timeout=args.timeout)


def _call(args: argparse.Namespace, method: str, **params: Any) -> Any:
    with _client(args) as client:
        return client.call(method, **params)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _parse_json(option: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise UsageError(f"{option} is not valid JSON: {err}") from None


# -- commands -------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    s = _call(args, "status")
    if args.json:
        _print_json(s)
        return 0
    lib = s["library"]
    up = fmt.duration(s["uptime_seconds"])
    print(f"musicd {s['version']} is running (pid {s['pid']}, up {up})")
    print(
        f"  library     {lib['path']} ({lib['source']}): {fmt.plural(lib['track_count'], 'track')}"
    )
    if lib.get("missing"):
        print("              the library file is missing; waiting for it to appear")
    elif lib.get("reader_error"):
        print(f"              cannot read it: {lib['reader_error']}")
    if lib.get("library_error"):
        print(f"              {lib['library_error']['errno']}: {lib['library_error']['hint']}")
    if lib.get("read_stalled"):
        print(f"              a read has been running for {lib['read_stalled']['seconds']:g} s")
    if lib.get("held_removals"):
        print(
            f"              {fmt.plural(lib['held_removals'], 'removal')} held for confirmation "
            f"('{hints.command('rescan', '--accept-removals')}' applies them)"
        )
    scanning = s.get("scan_in_progress")
    if scanning:
        print(
            f"  scanning    since {fmt.when(scanning['started_at'])} ({scanning['reason']}): "
            f"{fmt.progress(scanning, elapsed=False)}"
        )
    counts = s.get("last_scan_counts") or {}
    changes = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("added", "modified", "removed"))
    last = fmt.when(s["last_scan_at"])
    if s["last_scan_at"] is not None:
        last += f", took {fmt.ms(s['last_scan_duration_ms'])}"
    print(f"  last scan   {last}" + (f"; {changes}" if counts else ""))
    print(
        f"  last flush  {fmt.when(s['last_flush_at'])}"
        + (f", took {fmt.ms(s['last_flush_duration_ms'])}" if s["last_flush_at"] else "")
    )
    if s.get("flush_error"):
        print(f"  FLUSH ERROR {s['flush_error']} (since {fmt.when(s['flush_error_at'])})")
    db = s["database"]
    pending = (
        f"{db['uncheckpointed_commits']} commits since the last checkpoint"
        if s.get("dirty")
        else "everything checkpointed"
    )
    print(
        f"  database    {db['path']} (journal at seq {db['last_seq']}; {pending}; "
        f"{s['pending_events']} events still to apply)"
    )
    if s.get("database_error"):
        print(f"  DATABASE ERROR {s['database_error']} (since {fmt.when(db['error_at'])})")
    connections = s.get("connections")
    print(
        f"  socket      {s['socket']} ({fmt.plural(s['subscribers'], 'subscriber')}, "
        + (fmt.plural(connections, "connection") if connections is not None else "? connections")
        + ")"
    )
    if s.get("shutting_down"):
        print("  stopping")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    s = _call(args, "stats")
    if args.json:
        _print_json(s)
        return 0
    c = s["cache"]
    print(
        f"API cache: {fmt.plural(c['total_entries'], 'entry', 'entries')} ({c['successful']} "
        f"successful, {c['failed']} failed) in {fmt.plural(c['albums'], 'album')}; "
        f"{fmt.plural(c['hits'], 'hit')}, {fmt.plural(c['misses'], 'miss', 'misses')} since start"
    )
    for source, n in c["by_source"].items():
        print(
            f"  {source:<14} {fmt.plural(n['entries'], 'entry', 'entries'):>13} ({n['successful']} "
            f"ok, {n['failed']} failed)  {fmt.plural(n['hits'], 'hit')}  "
            f"{fmt.plural(n['misses'], 'miss', 'misses')}"
        )
    exists = "" if c["cache_file_exists"] else " (not written yet, or empty)"
    print(
        f"  file {c['cache_file']}{exists}; failed lookups retried after "
        f"{fmt.duration(c['policies']['failed_ttl_seconds'])}"
    )
    events = s["events"]
    emitted = ", ".join(f"{k} {v}" for k, v in events["emitted"].items()) or "none"
    print(f"events since start: {emitted} (last seq {events['last_seq']})")
    ctl = s["control"]
    print(
        f"control: {fmt.plural(s['subscribers'], 'subscriber')}, "
        f"{fmt.plural(ctl['connections_open'], 'connection')} open, "
        f"{ctl['connections_total']} since start, {fmt.plural(ctl['requests'], 'request')}, "
        f"{fmt.plural(ctl['errors'], 'error')}"
    )
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    with _client(args) as client:
        started = time.perf_counter()
        result = client.ping()
    took = time.perf_counter() - started
    if args.json:
        _print_json({**result, "round_trip_ms": round(took * 1000, 3)})
    else:
        print(f"pong from musicd {result['version']} (pid {result['pid']}) in {fmt.duration(took)}")
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    result = _call(args, "flush")
    if args.json:
        _print_json(result)
    else:
        print(f"{describe_flush(result)} ({fmt.ms(result.get('duration_ms'))})")
    return 0


def describe_flush(result: dict[str, Any]) -> str:
    """What the daemon says its flush did: its `did` sentence when it sends one."""
    did = result.get("did")
    if isinstance(did, str) and did:
        return did
    if result.get("wrote") is False:
        return "nothing to write: the state on disk was already up to date"
    return "flushed: the state is on disk"


def cmd_rescan(args: argparse.Namespace) -> int:
    if sys.stderr.isatty():
        from daemon.cli.progress import remote_scan

        with remote_scan(_socket_path(args), sys.stderr, MusicdClient):
            result = _call(args, "rescan", accept_removals=args.accept_removals)
    else:
        result = _call(args, "rescan", accept_removals=args.accept_removals)
    if args.json:
        _print_json(result)
        return 0
    print(
        f"rescanned in {fmt.ms(result['duration_ms'])}: {result['added']} added, "
        f"{result['modified']} modified, {result['removed']} removed"
    )
    if result.get("held_removals"):
        print(
            f"{fmt.plural(result['held_removals'], 'removal')} held for confirmation; "
            f"'{hints.command('rescan', '--accept-removals')}' applies them"
        )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with _client(args) as client:
        pid = int(client.shutdown()["pid"])
        still_running = DaemonError(
            f"asked musicd (pid {pid}) to stop, but it is still running after "
            f"{STOP_WAIT_SECONDS:g} s; see '{hints.command('logs', socket=False)}'"
        )
        try:
            # The socket closes first (the sources stop), then the daemon drains and flushes.
            client.wait_closed(STOP_WAIT_SECONDS)
        except ClientTimeout:
            raise still_running from None
    while _pid_alive(pid):
        if time.monotonic() - started > STOP_WAIT_SECONDS:
            raise still_running
        time.sleep(0.05)
    took = time.monotonic() - started
    if args.json:
        _print_json({"stopped": True, "pid": pid, "seconds": round(took, 3)})
    else:
        print(f"musicd stopped (pid {pid}, {fmt.duration(took)})")
    return 0


def _pid_alive(pid: int) -> bool:
    """Whether `pid` still runs; an exited child its parent has not reaped yet does not count."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def cmd_invalidate(args: argparse.Namespace) -> int:
    result = _call(args, "cache.invalidate", artist=args.artist, album=args.album)
    if args.json:
        _print_json(result)
    else:
        answers = fmt.plural(result["removed"], "cached answer")
        print(f"dropped {answers} of {args.artist} - {args.album}")
    return 0


def cmd_cache_get(args: argparse.Namespace) -> int:
    entry = _call(args, "cache.get", artist=args.artist, album=args.album, source=args.source)
    if args.json:
        _print_json(entry)
    if entry is None:
        raise NotFound(f"no cached answer for {args.artist} - {args.album} from {args.source}")
    if not args.json:
        outcome = "answer" if entry["success"] else "failed lookup"
        expires = f", expires {fmt.when(entry['expires_at'])}" if entry["expires_at"] else ""
        print(
            f"{entry['source']} {outcome} for {entry['artist']} - {entry['album']}, stored "
            f"{fmt.when(entry['created_at'])}{expires}"
        )
        print(f"  data      {orjson.dumps(entry['data']).decode()}")
        if entry["metadata"]:
            print(f"  metadata  {orjson.dumps(entry['metadata']).decode()}")
    return 0


def cmd_cache_put(args: argparse.Namespace) -> int:
    data = _parse_json("--data", args.data)
    metadata = _parse_json("--metadata", args.metadata)
    if metadata is not None and not isinstance(metadata, dict):
        raise UsageError("--metadata must be a JSON object")
    with _client(args) as client:
        entry = client.cache_put(
            args.artist,
            args.album,
            args.source,
            success=not args.failed,
            data=data,
            metadata=metadata,
        )
    if args.json:
        _print_json(entry)
    else:
        outcome = "answer" if entry["success"] else "failed lookup"
        print(f"stored {entry['source']} {outcome} for {entry['artist']} - {entry['album']}")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    result = _call(args, "cache.clear")
    if args.json:
        _print_json(result)
    else:
        print(f"dropped {fmt.plural(result['removed'], 'cached answer')}")
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    track = _call(args, "tracks.get", persistent_id=args.persistent_id)
    if args.json:
        _print_json(track)
    if track is None:
        raise NotFound(f"no track with persistent id {args.persistent_id} in the snapshot")
    if not args.json:
        width = max(len(k) for k in track)
        for key, value in track.items():
            if value is not None:
                print(f"{key:<{width}}  {value}")
    return 0


def cmd_album(args: argparse.Namespace) -> int:
    tracks = _call(args, "tracks.album", artist=args.artist, album=args.album)
    if args.json:
        _print_json(tracks)
    if not tracks:
        raise NotFound(f"no tracks of {args.artist} - {args.album} in the snapshot")
    if not args.json:
        for t in tracks:
            number = f"{t['disc_number'] or 1}-{t['track_number'] or 0:02d}"
            print(f"{number}  {t['name']}  ({t['artist']})  {t['persistent_id']}")
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    client = MusicdClient(_socket_path(args), timeout=args.timeout)
    try:
        with client:
            for event in client.subscribe(args.types):
                line = orjson.dumps(event).decode() if args.json else describe_event(event)
                print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    print("musicd: the daemon closed the connection (it stopped)", file=sys.stderr)
    return 1


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for an event."""
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
