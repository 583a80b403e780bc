"""`musicd run [--demo]`: the daemon in the foreground, and the demo on a bundled sample library.

The server side (anyio, the app, the stores, the config model) is imported when the command runs,
not when the parser is built, so client commands start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from daemon.cli.command import LOG_LEVELS, Subcommands, add_command
from daemon.cli.hints import Invocation
from daemon.errors import ConfigError, DaemonError

if TYPE_CHECKING:
    from typing import TextIO


def register(sub: Subcommands) -> None:
    """Add `musicd run` to the CLI."""
    run = add_command(
        sub,
        "run",
        "run the daemon in the foreground",
        cmd_run,
        description="Run the daemon in the foreground until Ctrl-C, SIGTERM or 'musicd stop'.",
    )
    run.add_argument(
        "--demo",
        action="store_true",
        help="run on a bundled sample library in a temp dir (nothing of yours is touched)",
    )
    run.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="log level: debug, info, warning or error (default: log.level in the config)",
    )


def _prepare_demo() -> Path:
    """Copy the sample library into a fresh temp dir with a config pointing at it."""
    # Here, not at the top: every command builds the parser, only the demo needs these.
    import tempfile
    from importlib import resources

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
        with db.transaction() as tx:
            cache.put_many(tx, entries)
    finally:
        db.close()


def _print_demo_help(cfg_path: Path, invocation: Invocation) -> None:
    root = cfg_path.parent
    library = root / "Library.xml"
    # The Python that runs musicd: a bare `python3` may not exist, or be another one.
    edit = (
        f"{shlex.quote(sys.executable)} -c \"import pathlib; p = pathlib.Path('{library}'); "
        "p.write_text(p.read_text().replace('Kind of Blue', 'Kind of Blue (Legacy Edition)'))\""
    )
    cached = invocation.command("cache", "get", "Miles Davis", "Kind of Blue", "musicbrainz")
    renamed = invocation.command("tracks", "album", "Miles Davis", "Kind of Blue (Legacy Edition)")
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
    {invocation.command("status")}
    {invocation.command("subscribe")}

  Stop it with Ctrl-C (or: {invocation.command("stop")}).
""",
        flush=True,
    )


def exec_with_c_allocator() -> None:
    """Replace this process (same pid, same arguments) with one under the C allocator, unless
    the environment already chose an allocator (see daemon.process on memory: the interpreter
    reads PYTHONMALLOC only at start-up). Returns only when nothing was replaced: the variable
    was set, or the exec failed (the daemon then runs as it is)."""
    if os.environ.get("PYTHONMALLOC"):
        return
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    with contextlib.suppress(OSError):
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def cmd_run(args: argparse.Namespace) -> int:
    from functools import partial

    import anyio

    from daemon.app import run
    from daemon.cli.progress import ProgressConsole, local_scans
    from daemon.config import load_config, resolve_config_path
    from daemon.logs import configure_logging, log_without_config, stop_logging
    from daemon.watch.progress import ScanProgress

    config_arg = str(_prepare_demo()) if args.demo else args.config
    # `run` takes no --socket; the demo's hints name the demo's config.
    invocation = Invocation.of(config=config_arg, socket=None)
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
        console = ProgressConsole(sys.stderr)
    configure_logging(
        level,
        cfg.log.file,
        console=None if not args.demo else True,
        console_stream=cast("TextIO", console) if console is not None else None,
        max_bytes=cfg.log.max_bytes,
        backups=cfg.log.backups,
    )
    try:
        if args.demo:
            _seed_demo_cache(Path(config_arg))
            _print_demo_help(Path(config_arg), invocation)
        try:
            if console is None:
                return anyio.run(run, cfg, invocation)
            # The line shows the scans of the daemon's scanner, which reports to `progress`.
            progress = ScanProgress()
            with local_scans(console, progress):
                return anyio.run(partial(run, cfg, invocation, progress=progress))
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
