"""What the subcommands share: their common options, the way they reach the daemon, and the one
place that prints a command's result and turns it into an exit status.

A handler returns either an exit status (a command that streams its output as it goes) or an
`Output`: the result, and how to show it to a person. `finish` prints the result as JSON with
--json, else shows it; a result that is a failed lookup becomes `NotFound` (exit status 1) after
the JSON is printed, so a script sees `null` and the status. `main()` maps every DaemonError to
one line on stderr and its exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import orjson

from daemon.client import MusicdClient
from daemon.errors import EX_USAGE, DaemonError
from daemon.paths import anchored, default_config_path, default_socket_path, expand

# A string: the class is generic for the type checker only (not subscriptable at run time).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
LOG_LEVELS = ["debug", "info", "warning", "error"]


class UsageError(DaemonError, code="usage_error", exit_status=EX_USAGE):
    """The command line asks for something impossible (64, like a parser error)."""


class NotFound(DaemonError, code="not_found", exit_status=1):
    """A lookup found nothing: exit status 1, like grep, so scripts can test for it."""


@dataclass(frozen=True)
class Output:
    """A command's result (`value`, what --json prints) and how to show it to a person."""

    value: Any
    show: Callable[[Any], None] | None = None
    status: int = 0
    # Set when the lookup found nothing: the one-line message of NotFound.
    not_found: str | None = None
    # One compact JSON line (the line-oriented commands) instead of an indented document.
    json_line: bool = False


Handler = Callable[[argparse.Namespace], "int | Output"]


def finish(output: Output, *, as_json: bool) -> int:
    """Print a command's output as JSON or for people; return its exit status."""
    if as_json:
        print_json(output.value, line=output.json_line)
    if output.not_found is not None:
        raise NotFound(output.not_found)
    if not as_json and output.show is not None:
        output.show(output.value)
    return output.status


def print_json(value: Any, *, line: bool = False) -> None:
    if line:
        sys.stdout.write(orjson.dumps(value).decode() + "\n")
        sys.stdout.flush()
    else:
        sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def parse_json(option: str, text: str | None) -> Any:
    """The JSON value of an option (None when it was not given)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise UsageError(f"{option} is not valid JSON: {err}") from None


def _config_help() -> str:
    env = os.environ.get("MUSICD_CONFIG")
    if env:
        return f"config file (default: $MUSICD_CONFIG, now {env})"
    return f"config file (default: $MUSICD_CONFIG, else {default_config_path()})"


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=_config_help())


def add_json_arg(
    parser: argparse.ArgumentParser, help_text: str = "print JSON for scripts"
) -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


def add_command(
    parent: Subcommands,
    name: str,
    help_text: str,
    handler: Handler,
    *,
    description: str | None = None,
    config: bool = True,
    json_help: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand that runs here: --config unless `config=False`, --json with `json_help`."""
    parser = parent.add_parser(name, help=help_text, description=description)
    if config:
        add_config_arg(parser)
    if json_help is not None:
        add_json_arg(parser, json_help)
    parser.set_defaults(handler=handler)
    return parser


def add_group(
    parent: Subcommands,
    name: str,
    help_text: str,
    *,
    actions_help: str,
    description: str | None = None,
    dest: str | None = None,
    metavar: str = "ACTION",
) -> Subcommands:
    """A command made of actions (`musicd cache get|put|clear`); returns where to add them."""
    parser = parent.add_parser(name, help=help_text, description=description)
    return parser.add_subparsers(
        dest=dest or f"{name}_command", metavar=metavar, required=True, help=actions_help
    )


def check_limit(limit: int) -> None:
    """--limit of the paged commands."""
    if not 1 <= limit <= 10000:
        raise UsageError("--limit must be between 1 and 10000")


def add_client_command(
    parent: Subcommands,
    name: str,
    help_text: str,
    handler: Handler,
    *,
    timeout: float = 30.0,
    json_help: str = "print JSON for scripts",
) -> argparse.ArgumentParser:
    """A subcommand that talks to the daemon: --config, --socket, --json and --timeout."""
    parser = parent.add_parser(name, help=help_text, description=help_text)
    add_config_arg(parser)
    parser.add_argument(
        "--socket", metavar="PATH", help="the daemon's socket (overrides the config)"
    )
    add_json_arg(parser, json_help)
    parser.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="SECONDS",
        help=f"how long to wait for an answer (default {timeout:g} s)",
    )
    parser.set_defaults(handler=handler)
    return parser


def socket_path(args: argparse.Namespace) -> Path:
    """--socket, else the config's control.socket.

    Without a config file (none named, none at the default path) that is the default socket:
    known without importing the config model (pydantic), the slowest part of a client's start.
    """
    if args.socket:
        return Path(args.socket).expanduser()
    # load_config's rule: --config, else $MUSICD_CONFIG, else the default path if it exists.
    named = args.config or os.environ.get("MUSICD_CONFIG")
    if not named and not default_config_path().exists():
        return default_socket_path()
    running = _listening_socket(Path(named).expanduser() if named else default_config_path())
    if running is not None:
        return running
    from daemon.config import load_config

    return load_config(args.config).control.socket


def _listening_socket(config: Path) -> Path | None:
    """The socket a config file names, read without the config model, if a socket is there.

    A daemon most likely listens there, so the model (pydantic, about 0.1 s of a client's
    start) is loaded only when the client cannot connect (`config_problem`), to name whatever
    is wrong with the file before saying the daemon is not running. Anything unusual
    (unreadable file, bad TOML, an odd value) returns None: load_config decides.
    """
    import tomllib

    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    control = data.get("control", {})
    value = control.get("socket") if isinstance(control, dict) else None
    if value is None:
        socket = default_socket_path()
    elif isinstance(value, str) and value:
        socket = anchored(expand(value), config.parent)  # the config model's rules
    else:
        return None
    try:
        return socket if socket.is_socket() else None
    except OSError:  # a name too long, say: load_config explains it
        return None


def config_problem(args: argparse.Namespace) -> DaemonError | None:
    """What is wrong with the config file in use, if anything (None with --socket).

    Asked when the daemon does not answer: a socket file left by a daemon that died may have
    spared the client the config check, and a broken config is the likelier news.
    """
    if args.socket:
        return None
    from daemon.config import load_config

    try:
        load_config(args.config)
    except DaemonError as err:
        return err
    return None


def connect(args: argparse.Namespace) -> MusicdClient:
    """A client for the daemon these options name, with the command's --timeout."""
    return MusicdClient(socket_path(args), timeout=args.timeout)
