"""`musicd triggers list|run|pause|resume|log`: the commands of the config file's `[[triggers]]`,
as the running daemon has them. Nothing here adds or changes a command: only the config
file does."""

from __future__ import annotations

import argparse
import time
from typing import Any

from daemon.cli.command import (
    Output,
    Subcommands,
    add_client_command,
    add_command,
    add_group,
    connect,
)
from daemon.cli.logs import add_log_arguments, show_log

_ABOUT = (
    "Commands the daemon starts when the library changes ([[triggers]] in the config file). "
    "Pausing lasts until resumed or until the daemon restarts."
)


def register(sub: Subcommands) -> None:
    """Add `triggers` to the `musicd` parser."""
    what = "show, run, pause or resume the config file's triggers, or read their log"
    group = add_group(
        sub, "triggers", what, actions_help="list, run, pause, resume or log", description=_ABOUT
    )
    add_client_command(group, "list", "show each trigger's state and last run", cmd_list)
    run = add_client_command(group, "run", "run a trigger now if events are pending", cmd_run)
    run.add_argument("name", metavar="NAME", help="the trigger's name")
    run.add_argument("--force", action="store_true", help="run it even with nothing pending")
    for action, help_text in (
        ("pause", "start no run of a trigger until resumed"),
        ("resume", "let a paused trigger run again"),
    ):
        parser = add_client_command(group, action, help_text, cmd_pause_or_resume)
        parser.add_argument("name", metavar="NAME", help="the trigger's name")
    log = add_command(
        group, "log", "show a trigger's runs and its command's output from the log", cmd_log
    )
    log.add_argument("name", metavar="NAME", help="the trigger's name")
    add_log_arguments(log)


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


def _line(t: dict[str, Any]) -> str:
    """One trigger, for people."""
    parts = [f"{t['name']}: {t['state']}", f"{t['pending']} pending"]
    if t["last_started_at"] is not None:
        ended = "timed out" if t["last_timed_out"] else f"exit {t['last_exit_status']}"
        parts.append(
            f"last run {_when(t['last_started_at'])} ({t['last_duration_seconds']} s, {ended})"
        )
    if t["next_start"] is not None:
        parts.append(f"next {_when(t['next_start'])}")
    return ", ".join(parts)


def cmd_log(args: argparse.Namespace) -> int:
    """`musicd logs --trigger NAME`: the log file is read here, the daemon need not run."""
    return show_log(args, trigger=args.name)


def cmd_list(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        result = client.triggers_list()

    def show(_: Any) -> None:
        if result["refused"]:
            print(f"triggers not taken: {result['refused']}")
        if not result["triggers"] and not result["refused"]:
            print("no triggers in the config file")
        for t in result["triggers"]:
            print(_line(t))

    return Output(result, show)


def cmd_run(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        result = client.triggers_run(args.name, force=args.force)

    def show(_: Any) -> None:
        if result["requested"]:
            print(f"{args.name}: starting")
        else:
            print(f"{args.name}: not started: {result['reason']}")

    return Output(result, show, status=0 if result["requested"] else 1)


def cmd_pause_or_resume(args: argparse.Namespace) -> Output:
    with connect(args) as client:
        if args.triggers_command == "pause":
            result = client.triggers_pause(args.name)
        else:
            result = client.triggers_resume(args.name)
    return Output(result, lambda t: print(_line(t)))
