"""The `musicd` command: argparse subcommands, top-down.

Server-side modules are imported lazily inside the commands, so client commands start fast.
Every DaemonError ends here as one line on stderr and its exit status; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast

from daemon import __version__
from daemon.errors import EX_USAGE, DaemonError, NotRunning

if TYPE_CHECKING:
    from typing import TextIO

Handler = Callable[[argparse.Namespace], int]

# Options that may come before or after the subcommand (`musicd --config X status` and
# `musicd status --config X`); the one after it wins.
GLOBAL_OPTIONS = ("config", "socket", "json")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit status 64 (EX_USAGE)."""

    def error(self, message: str) -> NoReturn:
        from daemon import hints

        # The hint runs the same executable (`.venv/bin/musicd`, `python -m daemon`).
        words = self.prog.split()[1:]
        again = hints.command(*words, "--help", config=False, socket=False)
        self.exit(EX_USAGE, f"{self.prog}: {message} (see '{again}')\n")


def _config_help() -> str:
    from daemon.paths import default_config_path

    env = os.environ.get("MUSICD_CONFIG")
    if env:
        return f"config file (default: $MUSICD_CONFIG, now {env})"
    return f"config file (default: $MUSICD_CONFIG, else {default_config_path()})"


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=_config_help())


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="musicd",
        description="Keeps a library snapshot and an API response cache in step with your "
        "Apple Music library.",
        epilog="Exit status: 0 ok, 1 not found or refused, 3 not running, 64 bad arguments; "
        "the README lists them all.",
    )
    parser.add_argument("--version", action="version", version=f"musicd {__version__}")
    _add_config_arg(parser)
    parser.add_argument(
        "--socket", metavar="PATH", help="the daemon's socket (overrides the config)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        required=True,
        parser_class=Parser,
        help="one of these; 'musicd COMMAND --help' describes it",
    )

    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground",
        description="Run the daemon in the foreground until Ctrl-C, SIGTERM or 'musicd stop'.",
    )
    _add_config_arg(run)
    run.add_argument(
        "--demo",
        action="store_true",
        help="run on a bundled sample library in a temp dir (nothing of yours is touched)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log level: debug, info, warning or error (default: log.level in the config)",
    )
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser(
        "check-config",
        help="validate the config file and the library it names, and show the result",
        description="Validate the config file, check that the library it names can be read, "
        "and show every value in use. Lists every problem at once; exit status 78 if any.",
    )
    _add_config_arg(check)
    check.add_argument("--json", action="store_true", help="print JSON for scripts")
    check.set_defaults(handler=cmd_check_config)

    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script. bash: add 'eval \"$(musicd completion bash)\"' "
        "to ~/.bashrc; zsh: write it to a file named _musicd in a directory on $fpath.",
    )
    completion.add_argument("shell", choices=["bash", "zsh"], help="the shell: bash or zsh")
    completion.set_defaults(handler=cmd_completion)

    for register in _extra_commands():
        register(sub, _add_config_arg)
    _finish(parser)
    return parser


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[argparse.ArgumentParser, str]]:
    """Each subcommand's parser and its one-line help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
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
            parser.error(f"--{name} does not apply to 'musicd {_command_words(args)}'")
    return args


def _command_words(args: argparse.Namespace) -> str:
    words = [args.command]
    keys = ("cache_command", "tracks_command", "launchd_command")
    words.extend(getattr(args, key) for key in keys if getattr(args, key, None))
    return " ".join(words)


def _extra_commands() -> list[Callable[..., None]]:
    registers: list[Callable[..., None]] = []
    for module in (
        "daemon.cli.control",
        "daemon.cli.changes",
        "daemon.cli.launchd",
        "daemon.cli.logs",
        "daemon.cli.state",
        "daemon.cli.doctor",
    ):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        registers.append(mod.register)
    return registers


def cmd_completion(args: argparse.Namespace) -> int:
    from daemon.cli.completion import completion_script

    sys.stdout.write(completion_script(build_parser(), args.shell))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from daemon.cli.check import check_config

    return check_config(args.config, as_json=bool(args.json))


def _prepare_demo() -> Path:
    """Copy the sample library into a fresh temp dir with a config pointing at it."""
    # Canonical (on macOS the temp dir is under the /var -> /private/var symlink, and FSEvents
    # reports canonical paths): the watched path then matches the paths of its file events.
    root = Path(os.path.realpath(tempfile.mkdtemp(prefix="musicd-demo-")))
    library = root / "Library.xml"
    sample = resources.files("daemon") / "data" / "sample_library.xml"
    with resources.as_file(sample) as src:
        shutil.copyfile(src, library)
    config = root / "config.toml"
    config.write_text(
        "# Written by `musicd run --demo`.\n"
        "[library]\n"
        f'path = "{library}"\n'
        "settle_seconds = 0.5\n"
        "[state]\n"
        f'dir = "{root / "state"}"\n'
        "flush_interval_seconds = 2\n"
        "[control]\n"
        f'socket = "{root / "musicd.sock"}"\n'
        "[log]\n"
        f'file = "{root / "musicd.log"}"\n',
        encoding="utf-8",
    )
    return config


def _seed_demo_cache(cfg_path: Path) -> None:
    """Give the demo a few cached API answers so the invalidation is visible."""
    import time

    from daemon.config import load_config
    from daemon.library.xml_reader import read_library_xml
    from daemon.stores import cache
    from daemon.stores._atomic import ensure_private_dir
    from daemon.stores.database import open_database

    cfg = load_config(cfg_path)
    ensure_private_dir(cfg.state.dir)
    albums = {
        (t.album_artist or t.artist or "", t.album or "")
        for t in read_library_xml(cfg.library.path).tracks.values()
    }
    entries = [
        cache.make_entry(
            artist,
            album,
            source,
            success=True,
            data={"demo": True, "album": album},
            metadata={"seeded_by": "demo"},
            now=time.time(),
            failed_ttl_seconds=cfg.cache.failed_ttl_seconds,
        )
        for artist, album in sorted(albums)
        for source in ("musicbrainz", "discogs")
    ]
    db = open_database(cfg.state.dir)
    try:
        db.writer.execute("BEGIN IMMEDIATE")
        cache.put_many(db.writer, entries)
        db.writer.execute("COMMIT")
    finally:
        db.close()


def _print_demo_help(cfg_path: Path) -> None:
    from daemon import hints

    root = cfg_path.parent
    library = root / "Library.xml"
    # The Python that runs musicd: a bare `python3` may not exist, or be another one.
    edit = (
        f"{shlex.quote(sys.executable)} -c \"import pathlib; p = pathlib.Path('{library}'); "
        "p.write_text(p.read_text().replace('Kind of Blue', 'Kind of Blue (Legacy Edition)'))\""
    )
    cached = hints.command("cache", "get", "Miles Davis", "Kind of Blue", "musicbrainz")
    renamed = hints.command("tracks", "album", "Miles Davis", "Kind of Blue (Legacy Edition)")
    print(
        f"""musicd demo: watching a copy of the sample library in {root}
  (a temp dir; it is removed when the demo stops)

  In another terminal, see that the album's API answer is cached (prints it; exit status 0):
    {cached}; echo "exit status $?"
  Rename the album:
    {edit}
  Then look again: the old album's answers are gone (exit status 1), the new name is there:
    {cached}; echo "exit status $?"
    {renamed}
  Talk to it:
    {hints.command("status")}
    {hints.command("subscribe")}

  Stop it with Ctrl-C (or: {hints.command("stop")}).
""",
        flush=True,
    )


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from daemon import hints
    from daemon.app import run
    from daemon.config import load_config, resolve_config_path
    from daemon.errors import ConfigError
    from daemon.logs import configure_logging, log_without_config, stop_logging

    config_arg = str(_prepare_demo()) if args.demo else args.config
    hints.remember(config=config_arg, socket=None)
    try:
        cfg = load_config(config_arg)
    except ConfigError as err:
        # Under launchd nobody watches stderr: leave the reason where `musicd logs` looks.
        log_without_config(
            "config_invalid",
            code=err.code,
            error=str(err),
            config=str(resolve_config_path(config_arg)[0]),
        )
        raise
    level = args.log_level or cfg.log.level
    console = None
    if sys.stderr.isatty():
        # A live progress line during long scans, on the terminal only (never in the log file).
        from daemon.cli.progress import ProgressConsole

        console = ProgressConsole(sys.stderr)
    configure_logging(
        level,
        cfg.log.file,
        console=None if not args.demo else True,
        console_stream=cast("TextIO", console) if console is not None else None,
        max_bytes=cfg.log.max_bytes,
        backups=cfg.log.backups,
    )
    if args.demo:
        _seed_demo_cache(Path(config_arg))
        _print_demo_help(Path(config_arg))
    try:
        try:
            if console is None:
                return anyio.run(run, cfg)
            from daemon.cli.progress import local_scans

            with local_scans(console):
                return anyio.run(run, cfg)
        except BaseExceptionGroup as group:
            # A user error raised inside the task groups (e.g. the socket is taken) is still a
            # one-line message, not an exception-group traceback.
            matched, _rest = group.split(DaemonError)
            if matched is None:
                raise
            first: BaseException = matched
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
    except DaemonError as err:
        import structlog

        structlog.get_logger("daemon.cli").error("daemon_failed", code=err.code, error=str(err))
        raise
    except KeyboardInterrupt:
        return 130
    finally:
        stop_logging()
        if args.demo:
            shutil.rmtree(Path(config_arg).parent, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    from daemon import hints

    parser = build_parser()
    args = parse_args(parser, argv)
    for name in GLOBAL_OPTIONS:
        if not hasattr(args, name):
            setattr(args, name, None if name != "json" else False)
    hints.remember(config=args.config, socket=args.socket)
    handler: Handler = args.handler
    try:
        return handler(args)
    except NotRunning as err:
        print(f"musicd: {_not_running(err)}", file=sys.stderr)
        return err.exit_status
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


def _not_running(err: NotRunning) -> str:
    """The client's message, with a start command that uses this invocation's config."""
    from daemon import hints

    text = str(err).split("; start it with", 1)[0]
    text += f"; start it with '{hints.command('run', socket=False)}'"
    if hints.given_socket() and not hints.given_config():
        text += " and a config whose control.socket is that path"
    if not hints.explicit_location():
        text += " (if it was started with --config, pass the same --config here)"
    return text
