"""`musicd status|stats|ping|flush|rescan|stop`: the daemon itself, through its socket.

Every command talks to the daemon's socket through the synchronous client; nothing here imports
anyio or the server, so these commands start fast. Output is for people by default and JSON
with --json. A daemon that is not running is one line and exit status 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import daemon.cli.format as fmt
from daemon.cli.command import Output, Subcommands, add_client_command, connect, socket_path
from daemon.cli.hints import Invocation
from daemon.client import ClientTimeout, MusicdClient
from daemon.errors import DaemonError

# `stop` waits this long for the daemon to drain, flush and exit (it needs about 5 s at most).
STOP_WAIT_SECONDS = 30.0
# Requests that may take long on a big library (a full read, a big write).
SLOW_TIMEOUT_SECONDS = 600.0


def register(sub: Subcommands) -> None:
    """Add the commands about the daemon itself to the `musicd` parser."""
    add_client_command(sub, "status", "show what the daemon is doing", cmd_status)
    add_client_command(
        sub, "stats", "API cache and event counts since the daemon started", cmd_stats
    )
    add_client_command(sub, "ping", "check that the daemon answers", cmd_ping)
    add_client_command(
        sub,
        "flush",
        "make every acknowledged write durable against a power cut now (a checkpoint)",
        cmd_flush,
        timeout=SLOW_TIMEOUT_SECONDS,
    )
    rescan = add_client_command(
        sub, "rescan", "read the whole library now", cmd_rescan, timeout=SLOW_TIMEOUT_SECONDS
    )
    rescan.add_argument(
        "--accept-removals",
        action="store_true",
        help="apply a mass removal that is held for confirmation",
    )
    add_client_command(sub, "stop", "stop the daemon and wait until it is gone", cmd_stop)


def cmd_status(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        return Output(client.status(), lambda s: show_status(s, args.invocation))


def show_status(s: dict[str, Any], invocation: Invocation) -> None:
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
            f"('{invocation.command('rescan', '--accept-removals')}' applies them)"
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
    # Only when the config has triggers, so the output of a daemon without any stays as it was.
    triggers = s.get("triggers") or {}
    if triggers:
        states = ", ".join(f"{name} {state}" for name, state in triggers.items())
        print(f"  triggers    {states}")
    if s.get("triggers_refused"):
        print(f"  TRIGGERS NOT TAKEN {s['triggers_refused']}")
    if s.get("shutting_down"):
        print("  stopping")


def cmd_stats(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        return Output(client.stats(), show_stats)


def show_stats(s: dict[str, Any]) -> None:
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


def cmd_ping(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        started = time.perf_counter()
        result = client.ping()
    took = time.perf_counter() - started

    def show(_: Any) -> None:
        print(f"pong from musicd {result['version']} (pid {result['pid']}) in {fmt.duration(took)}")

    return Output({**result, "round_trip_ms": round(took * 1000, 3)}, show)


def cmd_flush(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        return Output(client.flush(), show_flush)


def show_flush(result: dict[str, Any]) -> None:
    print(f"{describe_flush(result)} ({fmt.ms(result.get('duration_ms'))})")


def describe_flush(result: dict[str, Any]) -> str:
    """What the daemon says its flush did: its `did` sentence when it sends one."""
    did = result.get("did")
    if isinstance(did, str) and did:
        return did
    if result.get("wrote") is False:
        return "nothing to write: the state on disk was already up to date"
    return "flushed: the state is on disk"


def cmd_rescan(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        if sys.stderr.isatty():
            # A thread that draws the progress line: only on a terminal.
            from daemon.cli.progress import remote_scan

            with remote_scan(socket_path(args), sys.stderr, MusicdClient):
                result = client.rescan(accept_removals=args.accept_removals)
        else:
            result = client.rescan(accept_removals=args.accept_removals)
    return Output(result, lambda r: show_rescan(r, args.invocation))


def show_rescan(result: dict[str, Any], invocation: Invocation) -> None:
    print(
        f"rescanned in {fmt.ms(result['duration_ms'])}: {result['added']} added, "
        f"{result['modified']} modified, {result['removed']} removed"
    )
    if result.get("held_removals"):
        print(
            f"{fmt.plural(result['held_removals'], 'removal')} held for confirmation; "
            f"'{invocation.command('rescan', '--accept-removals')}' applies them"
        )


def cmd_stop(args: argparse.Namespace) -> Output:
    started = time.monotonic()
    with connect(args) as client:
        pid = int(client.shutdown()["pid"])
        still_running = DaemonError(
            f"asked musicd (pid {pid}) to stop, but it is still running after "
            f"{STOP_WAIT_SECONDS:g} s; see '{args.invocation.command('logs', socket=False)}'"
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

    def show(_: Any) -> None:
        print(f"musicd stopped (pid {pid}, {fmt.duration(took)})")

    return Output({"stopped": True, "pid": pid, "seconds": round(took, 3)}, show)


def _pid_alive(pid: int) -> bool:
    """Whether `pid` still runs; an exited child its parent has not reaped yet does not count."""
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
