"""The `musicd` command line itself: help texts, usage errors, global options, hints."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from daemon import cli
from daemon.cli import build_parser, parse_args
from daemon.cli.command import NotFound, Output, finish
from daemon.cli.hints import Invocation, program
from daemon.events import EVENT_TYPES
from daemon.models import DEFAULT_SOURCES
from daemon.paths import default_config_path

pytestmark = pytest.mark.timeout(60)


def musicd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser below the top one, with the words that select it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*words, name), child
                yield from commands(child, (*words, name))


def test_a_refused_global_option_names_every_word_of_the_command() -> None:
    # Read from the parser: each group (cache, tracks, cursor, export, launchd) and each leaf.
    parser = build_parser()
    leaves = [words for words, sub in commands(parser) if cli._subparsers(sub) is None]
    assert {words[0] for words in leaves if len(words) == 2} >= {
        "cache", "tracks", "cursor", "export", "launchd"
    }  # fmt: skip
    for words in leaves:
        args = argparse.Namespace()
        node: argparse.ArgumentParser = parser
        for word in words:
            action = cli._subparsers(node)
            assert action is not None
            setattr(args, action.dest, word)
            node = action.choices[word]
        assert cli.command_words(parser, args) == list(words)


def test_every_command_has_a_description_and_every_argument_a_help_text() -> None:
    parser = build_parser()
    seen = list(commands(parser))
    assert len(seen) > 20
    missing: list[str] = []
    for words, sub in [((), parser), *seen]:
        if not sub.description:
            missing.append(f"musicd {' '.join(words)}: no description")
        missing.extend(
            f"musicd {' '.join(words)}: {action.dest} has no help text"
            for action in sub._actions
            if not action.help or action.help == argparse.SUPPRESS
        )
    assert not missing, "\n".join(missing)


def test_help_lists_the_default_config_path_and_the_valid_values() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MUSICD_CONFIG"}
    status = musicd("status", "--help", env=env)
    assert status.returncode == 0
    assert str(default_config_path()) in " ".join(status.stdout.split())
    put = " ".join(musicd("cache", "put", "--help").stdout.split())
    assert all(source in put for source in DEFAULT_SOURCES)
    subscribe = " ".join(musicd("subscribe", "--help").stdout.split())
    assert all(kind in subscribe for kind in EVENT_TYPES)


@pytest.mark.parametrize(
    "args",
    [
        ["cache", "put", "Miles Davis"],  # missing arguments
        ["tracks", "get"],
        ["statuss"],  # unknown command
        ["subscribe", "--type", "nope"],  # invalid choice
        ["status", "--timeout", "soon"],  # wrong type
        ["--socket", "/tmp/x.sock", "run"],  # a global option the command does not take
        [],
    ],
)
def test_bad_arguments_exit_64_with_one_line(args: list[str]) -> None:
    result = musicd(*args)
    assert result.returncode == 64, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("musicd")
    assert "--help" in lines[0]


@pytest.mark.parametrize(
    ("argv", "config", "socket", "as_json"),
    [
        (["--config", "a.toml", "status"], "a.toml", None, False),
        (["status", "--config", "b.toml"], "b.toml", None, False),
        (["--config", "a.toml", "status", "--config", "b.toml"], "b.toml", None, False),
        (["--json", "--socket", "s.sock", "cache", "get", "x", "y", "z"], None, "s.sock", True),
        (["--config", "a.toml", "check-config", "--json"], "a.toml", None, True),
        (["--config", "a.toml", "logs", "-n", "3"], "a.toml", None, False),
    ],
)
def test_global_options_go_before_or_after_the_command(
    argv: list[str], config: str | None, socket: str | None, as_json: bool
) -> None:
    args = parse_args(build_parser(), argv)
    assert args.config == config
    assert getattr(args, "socket", None) == socket
    assert bool(args.json) == as_json


@pytest.fixture
def saved_argv() -> Iterator[None]:
    saved = list(sys.argv)
    try:
        yield
    finally:
        sys.argv[:] = saved


@pytest.mark.usefixtures("saved_argv")
def test_hints_name_the_executable_that_ran_and_the_options_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "venv" / "bin" / "musicd"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSICD_CONFIG", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    sys.argv[0] = "venv/bin/musicd"  # not on PATH: the absolute path, pastable anywhere
    given = Invocation.of(config="my config.toml", socket=None)
    assert given.command("stop") == f"{script} stop --config '{tmp_path / 'my config.toml'}'"
    monkeypatch.setenv("PATH", str(script.parent))
    assert program() == "musicd"  # the shell finds this very file as `musicd`
    on_path = Invocation.of(config=None, socket="/tmp/d.sock")
    assert on_path.command("status") == "musicd status --socket /tmp/d.sock"
    assert on_path.command("run", socket=False) == "musicd run"
    sys.argv[0] = str(Path(cli.__file__).parent.with_name("__main__.py"))
    assert program() == f"{sys.executable} -m daemon"


def test_not_running_hint_repeats_the_config_and_asks_about_the_default(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path))
    config = root / "c.toml"
    config.write_text(f'[control]\nsocket = "{root / "d.sock"}"\n', encoding="utf-8")
    given = musicd("status", "--config", str(config))
    assert given.returncode == 3
    assert f"-m daemon run --config {config}'" in given.stderr
    assert "if it was started with --config" not in given.stderr
    # No --config: the default socket; maybe the daemon runs with a config of its own.
    env = {k: v for k, v in os.environ.items() if k != "MUSICD_CONFIG"}
    env |= {"XDG_RUNTIME_DIR": str(root), "XDG_CONFIG_HOME": str(root / "none")}
    default = musicd("status", env=env)
    assert default.returncode == 3
    assert "if it was started with --config, pass the same --config here" in default.stderr
    assert len(default.stderr.strip().splitlines()) == 1


def test_completion_scripts_name_the_commands() -> None:
    for shell in ("bash", "zsh"):
        result = musicd("completion", shell)
        assert result.returncode == 0, result.stderr
        for word in ("check-config", "subscribe", "--accept-removals", "musicbrainz"):
            assert word in result.stdout, (shell, word)
    assert musicd("completion", "fish").returncode == 64


def test_client_commands_do_not_import_the_server_or_completion() -> None:
    code = (
        "import sys; from daemon.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('anyio', 'pydantic', 'shtab', 'structlog') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "[]"


def test_without_a_config_file_the_socket_is_the_default_one_found_without_pydantic(
    tmp_path: Path,
) -> None:
    code = (
        "import argparse, sys; from daemon.cli.command import socket_path; "
        "fast = socket_path(argparse.Namespace(socket=None, config=None)); "
        "print('pydantic' in sys.modules); "
        "from daemon.config import load_config; print(fast == load_config(None).control.socket)"
    )
    env = {k: v for k, v in os.environ.items() if k != "MUSICD_CONFIG"}
    env |= {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "none")}
    env |= {"XDG_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_with_a_daemon_listening_the_config_socket_is_read_without_pydantic(
    tmp_path: Path,
) -> None:
    root = Path(os.path.realpath(tmp_path))
    config = root / "c.toml"
    # Relative to the config file, with a $VAR: the config model's rules.
    config.write_text('[control]\nsocket = "$SOCKDIR/d.sock"\n', encoding="utf-8")
    (root / "s").mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(root / "s" / "d.sock"))
    code = (
        "import argparse, sys; from daemon.cli.command import socket_path; "
        f"fast = socket_path(argparse.Namespace(socket=None, config={str(config)!r})); "
        "print('pydantic' in sys.modules); "
        f"from daemon.config import load_config; print(fast == load_config({str(config)!r})"
        ".control.socket, fast)"
    )
    env = {**os.environ, "SOCKDIR": "s"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
        )
    finally:
        listener.close()
    assert out.stdout.split() == ["False", "True", str(root / "s" / "d.sock")], out.stderr


def test_with_nothing_listening_a_broken_config_is_reported_before_not_running(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[control]\nsocket = "{tmp_path / "d.sock"}"\n[library]\nsettle = 1\n', encoding="utf-8"
    )
    given = musicd("status", "--config", str(config))
    assert given.returncode == 78, given.stderr
    assert "unknown key 'library.settle'" in given.stderr


def test_a_socket_left_by_a_dead_daemon_does_not_hide_a_broken_config(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path))
    config = root / "c.toml"
    config.write_text(
        f'[control]\nsocket = "{root / "d.sock"}"\n[library]\nsettle = 1\n', encoding="utf-8"
    )
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(root / "d.sock"))  # bound, never listening: as after a kill -9
    try:
        given = musicd("status", "--config", str(config))
    finally:
        stale.close()
    assert given.returncode == 78, given.stderr
    assert "unknown key 'library.settle'" in given.stderr


def test_a_lookup_that_finds_nothing_prints_null_with_json_then_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown: list[object] = []
    missing = Output(None, shown.append, not_found="no cached answer for a - b from c")
    with pytest.raises(NotFound, match="no cached answer") as raised:
        finish(missing, as_json=True)
    assert raised.value.exit_status == 1
    assert capsys.readouterr().out == "null\n"
    with pytest.raises(NotFound):
        finish(missing, as_json=False)
    assert capsys.readouterr().out == "" and shown == []


def test_an_output_is_shown_to_people_or_printed_as_json_with_its_exit_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = {"committed": False, "cursor": "1:2"}
    shown: list[object] = []
    output = Output(result, shown.append, status=1)
    assert finish(output, as_json=False) == 1
    assert shown == [result] and capsys.readouterr().out == ""
    assert finish(output, as_json=True) == 1
    assert orjson.loads(capsys.readouterr().out) == result
    line = Output(result, None, json_line=True)
    assert finish(line, as_json=True) == 0
    assert capsys.readouterr().out == '{"committed":false,"cursor":"1:2"}\n'


def test_the_cli_offers_the_log_levels_the_config_and_the_logs_know() -> None:
    # Spelled again in the CLI so that building the parser imports neither pydantic nor logging.
    from typing import get_args

    from daemon.cli.command import LOG_LEVELS
    from daemon.config import LogConfig
    from daemon.logs import LEVELS

    assert LOG_LEVELS == list(LEVELS) == list(get_args(LogConfig.model_fields["level"].annotation))
