"""The `musicd` command: argparse subcommands, top-down.

Server-side modules are imported lazily inside the commands, so client commands start fast.
Every DaemonError ends here as one line on stderr and its exit status; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from daemon import __version__
from daemon.errors import DaemonError

Handler = Callable[[argparse.Namespace], int]


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $MUSICD_CONFIG, then the platform default)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicd",
        description="Keeps a library snapshot and an API response cache in step with your "
        "Apple Music library.",
    )
    parser.add_argument("--version", action="version", version=f"musicd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the daemon in the foreground")
    _add_config_arg(run)
    run.add_argument(
        "--demo",
        action="store_true",
        help="run on a bundled sample library in a temp dir (nothing of yours is touched)",
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser("check-config", help="validate the config file and show the result")
    _add_config_arg(check)
    check.set_defaults(handler=cmd_check_config)

    for register in _extra_commands():
        register(sub, _add_config_arg)
    return parser


def _extra_commands() -> list[Callable[..., None]]:
    registers: list[Callable[..., None]] = []
    for module in (
        "daemon.cli_control",
        "daemon.cli_launchd",
        "daemon.cli_logs",
        "daemon.cli_doctor",
    ):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        registers.append(mod.register)
    return registers


def cmd_check_config(args: argparse.Namespace) -> int:
    from daemon.config import load_config

    cfg = load_config(args.config)
    where = cfg.source_path or "built-in defaults (no config file found)"
    print(f"config OK: {where}")
    for section in ("library", "state", "cache", "control", "log"):
        for key, value in getattr(cfg, section).model_dump().items():
            print(f"  {section}.{key} = {value}")
    return 0


def _prepare_demo() -> Path:
    """Copy the sample library into a fresh temp dir with a config pointing at it."""
    root = Path(tempfile.mkdtemp(prefix="musicd-demo-"))
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
    from daemon.config import load_config
    from daemon.library.xml_reader import read_library_xml
    from daemon.stores._atomic import ensure_private_dir
    from daemon.stores.api_cache import ApiCache

    cfg = load_config(cfg_path)
    ensure_private_dir(cfg.state.dir)
    cache = ApiCache(
        cfg.state.dir / "api_cache.json", failed_ttl_seconds=cfg.cache.failed_ttl_seconds
    )
    albums = {
        (t.album_artist or t.artist or "", t.album or "")
        for t in read_library_xml(cfg.library.path).tracks.values()
    }
    for artist, album in sorted(albums):
        for source in ("musicbrainz", "discogs"):
            cache.put(
                artist,
                album,
                source,
                success=True,
                data={"demo": True, "album": album},
                metadata={"seeded_by": "demo"},
            )
    cache.capture().write()


def _print_demo_help(cfg_path: Path) -> None:
    root = cfg_path.parent
    library = root / "Library.xml"
    edit = (
        "python3 -c \"import pathlib; p = pathlib.Path('" + str(library) + "'); "
        "p.write_text(p.read_text().replace('Kind of Blue', 'Kind of Blue (Legacy Edition)'))\""
    )
    print(
        f"""musicd demo: watching a copy of the sample library in {root}

  In another terminal, rename an album:
    {edit}
  Then look at what followed:
    grep -c 'Legacy Edition' {root}/state/snapshot.json   # the snapshot has the new name
    grep -c 'kind of blue' {root}/state/api_cache.json   # the old album's answers are gone (0)
  Talk to it:
    musicd status --config {cfg_path}
    musicd subscribe --config {cfg_path}

  Stop it with Ctrl-C.
""",
        flush=True,
    )


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from daemon.app import run
    from daemon.config import load_config, resolve_config_path
    from daemon.errors import ConfigError
    from daemon.logs import configure_logging, log_without_config, stop_logging

    config_arg = str(_prepare_demo()) if args.demo else args.config
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
    configure_logging(
        level,
        cfg.log.file,
        console=None if not args.demo else True,
        max_bytes=cfg.log.max_bytes,
        backups=cfg.log.backups,
    )
    if args.demo:
        _seed_demo_cache(Path(config_arg))
        _print_demo_help(Path(config_arg))
    try:
        try:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
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
