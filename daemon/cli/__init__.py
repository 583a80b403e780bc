"""The `musicd` command: argparse subcommands, top-down, one module per command group.

Each module's `register` adds its commands; their handlers return an exit status or an Output
that `command.finish` prints. Server-side modules are imported only inside the commands that run
the daemon or open its database, so client commands start fast. Every DaemonError ends here as
one line on stderr and its exit status; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn, cast

from daemon import __version__
from daemon.cli import (
    cache,
    changes,
    check,
    control,
    doctor,
    launchd,
    logs,
    run,
    state,
    tracks,
    triggers,
)
from daemon.cli.command import (
    Handler,
    Output,
    Subcommands,
    add_command,
    add_config_arg,
    add_json_arg,
    config_problem,
    finish,
)
from daemon.cli.hints import Invocation, program
from daemon.errors import EX_USAGE, DaemonError, NotRunning

# Options that may come before or after the subcommand (`musicd --config X status` and
# `musicd status --config X`); the one after it wins.
GLOBAL_OPTIONS = ("config", "socket", "json")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit status 64 (EX_USAGE)."""

    def error(self, message: str) -> NoReturn:
        # The hint runs the same executable (`.venv/bin/musicd`, `python -m daemon`).
        words = self.prog.split()[1:]
        again = Invocation(program()).command(*words, "--help")
        self.exit(EX_USAGE, f"{self.prog}: {message} (see '{again}')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="musicd",
        description="Keeps a library snapshot and an API response cache in step with your "
        "Apple Music library.",
        epilog="Exit status: 0 ok, 1 not found or refused, 3 not running, 64 bad arguments; "
        "the README lists them all.",
    )
    parser.add_argument("--version", action="version", version=f"musicd {__version__}")
    add_config_arg(parser)
    parser.add_argument(
        "--socket", metavar="PATH", help="the daemon's socket (overrides the config)"
    )
    add_json_arg(parser)
    # Parser is an ArgumentParser: the command modules need no more than that.
    sub = cast(
        "Subcommands",
        parser.add_subparsers(
            dest="command",
            metavar="COMMAND",
            required=True,
            parser_class=Parser,
            help="one of these; 'musicd COMMAND --help' describes it",
        ),
    )
    # In this order in `musicd --help`.
    run.register(sub)
    check.register(sub)
    completion = add_command(
        sub,
        "completion",
        "print a shell completion script (bash or zsh)",
        cmd_completion,
        description="Print a completion script. bash: add 'eval \"$(musicd completion bash)\"' "
        "to ~/.bashrc; zsh: write it to a file named _musicd in a directory on $fpath.",
        config=False,
    )
    completion.add_argument("shell", choices=["bash", "zsh"], help="the shell: bash or zsh")
    for module in (control, cache, tracks, changes, triggers, launchd, logs, state, doctor):
        module.register(sub)
    _finish(parser)
    return parser


def cmd_completion(args: argparse.Namespace) -> int:
    # shtab is imported by this command only.
    from daemon.cli.completion import completion_script

    sys.stdout.write(completion_script(build_parser(), args.shell))
    return 0


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Parser] | None:
    """Where `parser` keeps its subcommands (None: it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[argparse.ArgumentParser, str]]:
    """Each subcommand's parser and its one-line help."""
    action = _subparsers(parser)
    if action is not None:
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, child in action.choices.items():
            yield child, helps.get(name) or ""


def _finish(parser: argparse.ArgumentParser) -> None:
    """Make global options work after the subcommand too, and give every command a description."""

    def walk(node: argparse.ArgumentParser, help_text: str) -> None:
        if not node.description and help_text:
            node.description = help_text[0].upper() + help_text[1:] + "."
        accepted = set()
        for action in node._actions:
            if action.dest in GLOBAL_OPTIONS:
                # Unset unless given here, so a value given before the subcommand survives.
                action.default = argparse.SUPPRESS
                accepted.add(action.dest)
        node.set_defaults(global_options=frozenset(accepted))
        for child, text in _subcommands(node):
            walk(child, text)

    for child, text in _subcommands(parser):
        walk(child, text)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, then refuse a global option the chosen command does not take."""
    args = parser.parse_args(argv)
    accepted: frozenset[str] = getattr(args, "global_options", frozenset())
    for name in GLOBAL_OPTIONS:
        given = getattr(args, name, None)
        if given and name not in accepted:
            words = " ".join(command_words(parser, args))
            parser.error(f"--{name} does not apply to 'musicd {words}'")
    return args


def command_words(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The words that chose the command (`cache get`), read down the parser's own tree."""
    words: list[str] = []
    action = _subparsers(parser)
    while action is not None and getattr(args, action.dest, None) is not None:
        word: str = getattr(args, action.dest)
        words.append(word)
        action = _subparsers(action.choices[word])
    return words


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if argv is None and args.handler is run.cmd_run:
        # The daemon's own process, not a caller's (which passes argv).
        run.exec_with_c_allocator()
    for name in GLOBAL_OPTIONS:
        if not hasattr(args, name):
            setattr(args, name, None if name != "json" else False)
    # Built once; the commands that suggest another command take it from here.
    args.invocation = Invocation.of(config=args.config, socket=args.socket)
    handler: Handler = args.handler
    try:
        result = handler(args)
        if isinstance(result, Output):
            return finish(result, as_json=bool(args.json))
        return result
    except NotRunning as err:
        problem = config_problem(args)
        print(f"musicd: {problem or _not_running(err, args.invocation)}", file=sys.stderr)
        return (problem or err).exit_status
    except DaemonError as err:
        print(f"musicd: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `musicd subscribe | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _not_running(err: NotRunning, invocation: Invocation) -> str:
    """The client's message, with a start command that uses this invocation's config."""
    text = str(err).split("; start it with", 1)[0]
    text += f"; start it with '{invocation.command('run', socket=False)}'"
    if invocation.socket and not invocation.config:
        text += " and a config whose control.socket is that path"
    if not invocation.explicit_location:
        text += " (if it was started with --config, pass the same --config here)"
    return text
