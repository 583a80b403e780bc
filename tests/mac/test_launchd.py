"""`musicd launchd …`: the rendered plist, and the launchctl calls (a fake launchctl on PATH)."""

from __future__ import annotations

import os
import plistlib
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.app import DRAIN_SECONDS, FINAL_CHECKPOINT_SECONDS
from daemon.mac import launchd
from daemon.mac.launchctl import LaunchdError, parse_print
from daemon.mac.launchd import LABEL, TEMPLATE

REPO = Path(__file__).resolve().parents[2]
UID = os.getuid()
TARGET = f"gui/{UID}/{LABEL}"

# A fake launchctl: records its argv, keeps "loaded" in a file, prints like the real one.
FAKE_LAUNCHCTL = r'''#!{python}
import json, pathlib, sys
state = pathlib.Path({state!r})
args = sys.argv[1:]
with open(state / "calls.jsonl", "a") as fh:
    fh.write(json.dumps(args) + "\n")
loaded = state / "loaded"
linger = state / "linger"  # launchd still forgetting a booted-out service: print says loaded
cmd = args[0] if args else ""
not_found = 'Bad request.\nCould not find service "{label}" in domain for user gui: {uid}\n'
if cmd == "print":
    if linger.exists():
        left = int(linger.read_text())
        linger.unlink() if left <= 1 else linger.write_text(str(left - 1))
    elif not loaded.exists():
        sys.stderr.write(not_found)
        sys.exit(113)
    last_exit = (state / "last_exit").read_text() if (state / "last_exit").exists() else "0"
    print("""{target} = {{
	active count = 1
	path = /Users/me/Library/LaunchAgents/{label}.plist
	type = LaunchAgent
	state = running

	program = /opt/musicd/bin/musicd
	arguments = {{
		/opt/musicd/bin/musicd
		run
	}}

	working directory = /

	stdout path = /Users/me/Library/Logs/musicd/musicd.stdout.log
	stderr path = /Users/me/Library/Logs/musicd/musicd.stderr.log
	default environment = {{
		PATH => /usr/bin:/bin:/usr/sbin:/sbin
	}}

	environment = {{
		XPC_SERVICE_NAME => {label}
	}}

	domain = gui/{uid} [100005]
	asid = 100005
	minimum runtime = 30
	exit timeout = 20
	nice = 10
	runs = 1
	pid = 123
	immediate reason = speculative
	forks = 0
	execs = 1
	initialized = 1
	trampolined = 1
	started suspended = 0
	proxy started suspended = 0
	last exit code = {{last_exit}}

	event triggers = {{
	}}

	spawn type = background (5)
	properties = keepalive | runatload | inferred program
}}""".replace("{{last_exit}}", last_exit))
elif cmd == "bootout":
    if not loaded.exists():
        sys.stderr.write("Boot-out failed: 3: No such process\n")
        sys.exit(3)
    loaded.unlink()
    if (state / "linger_after_bootout").exists():
        linger.write_text((state / "linger_after_bootout").read_text())
elif cmd == "bootstrap":
    if loaded.exists() or (state / "fail_bootstrap").exists():
        sys.stderr.write("Bootstrap failed: 5: Input/output error\n"
                         "Try re-running the command as root for richer errors.\n")
        sys.exit(5)
    loaded.write_text(args[2])
elif cmd == "enable":
    pass
elif cmd == "kickstart":
    if not loaded.exists():
        sys.stderr.write(not_found)
        sys.exit(113)
else:
    sys.stderr.write("Unrecognized subcommand: " + cmd + "\n")
    sys.exit(64)
'''


@dataclass
class Env:
    home: Path
    bin_dir: Path
    state: Path
    config: Path

    @property
    def plist_path(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def musicd(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("MUSICD_CONFIG", "XDG_STATE_HOME", "XDG_CONFIG_HOME")
        }
        env.update(HOME=str(self.home), PATH=str(self.bin_dir))
        return subprocess.run(
            [sys.executable, "-m", "daemon", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.home,
            timeout=60,
        )

    def calls(self) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        calls: list[list[str]] = [orjson.loads(ln) for ln in path.read_bytes().splitlines()]
        path.unlink()
        return calls

    def set_loaded(self) -> None:
        (self.state / "loaded").write_text(str(self.plist_path))

    def is_loaded(self) -> bool:
        return (self.state / "loaded").exists()


def make_env(tmp_path: Path, *, with_launchctl: bool) -> Env:
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    state = tmp_path / "launchctl-state"
    for d in (home, bin_dir, state):
        d.mkdir()
    config = home / "musicd.toml"
    config.write_text(f'[log]\nfile = "{home / "logs" / "musicd.log"}"\n', encoding="utf-8")
    if with_launchctl:
        fake = bin_dir / "launchctl"
        fake.write_text(
            FAKE_LAUNCHCTL.format(
                python=sys.executable, state=str(state), label=LABEL, uid=UID, target=TARGET
            )
        )
        fake.chmod(0o755)
    return Env(home, bin_dir, state, config)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path, with_launchctl=True)


def load(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        data: dict[str, Any] = plistlib.load(fh)
    return data


def assert_absolute_and_exists(path: str) -> None:
    assert os.path.isabs(path), path
    assert os.path.exists(path), path


# --- the template and the rendered plist -----------------------------------------------------


def test_template_is_named_after_its_label_and_matches_the_builtin_copy() -> None:
    assert TEMPLATE == REPO / "launchd" / f"{LABEL}.plist"
    template = load(TEMPLATE)
    assert template["Label"] == LABEL == TEMPLATE.stem
    assert LABEL.count(".") >= 2  # reverse-DNS
    assert template == launchd._BUILTIN_TEMPLATE


def test_install_writes_a_plist_with_every_key_and_only_absolute_existing_paths(
    env: Env,
) -> None:
    done = env.musicd("launchd", "install", "--config", str(env.config))
    assert done.returncode == 0, done.stderr
    plist = load(env.plist_path)

    assert plist["Label"] == LABEL
    program = plist["ProgramArguments"]
    assert os.access(program[0], os.X_OK)
    assert program[-3:] == ["run", "--config", str(env.config)]
    assert program[:-3] in (
        [str(Path(sys.executable).parent / "musicd")],
        [sys.executable, "-m", "daemon"],
    )
    assert plist["RunAtLoad"] is True
    # Restarted after a crash or a non-zero exit, not after a clean `musicd stop`.
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProcessType"] == "Background"
    assert plist["LowPriorityIO"] is True
    assert isinstance(plist["Nice"], int) and plist["Nice"] > 0
    # A config error (exit 78) restarts at most this often, with a log line each time.
    assert plist["ThrottleInterval"] >= 10
    # SIGKILL only after the daemon's longest drain and final checkpoint.
    assert plist["ExitTimeOut"] > DRAIN_SECONDS + FINAL_CHECKPOINT_SECONDS
    assert Path(plist["StandardOutPath"]).parent == env.log_dir
    assert Path(plist["StandardErrorPath"]).parent == env.log_dir
    assert plist["StandardOutPath"] != plist["StandardErrorPath"]
    variables = plist["EnvironmentVariables"]
    assert variables["MUSICD_CONFIG"] == str(env.config)
    assert "/usr/bin" in variables["PATH"].split(":")  # osascript
    # The allocator that returns free pages (daemon.process), so `run` need not exec itself.
    assert variables["PYTHONMALLOC"] == "malloc"

    for path in [
        program[0],
        program[-1],
        plist["StandardOutPath"],
        plist["StandardErrorPath"],
        variables["MUSICD_CONFIG"],
        *variables["PATH"].split(":"),
    ]:
        assert_absolute_and_exists(path)
    # launchd refuses a plist that others can write.
    assert stat.S_IMODE(env.plist_path.stat().st_mode) == 0o644
    assert "wrote" in done.stdout


def test_install_without_config_uses_the_defaults_under_home(env: Env) -> None:
    assert env.musicd("launchd", "install").returncode == 0
    plist = load(env.plist_path)
    assert plist["ProgramArguments"][-1] == "run"
    assert "MUSICD_CONFIG" not in plist["EnvironmentVariables"]
    assert Path(plist["StandardErrorPath"]).is_relative_to(env.home)
    assert_absolute_and_exists(plist["StandardErrorPath"])


def test_rendering_never_pastes_strings_into_xml(tmp_path: Path) -> None:
    odd = tmp_path / "a <b> & 'c' \"d\""
    agent = launchd.render_agent(log_dir=odd, config_path=odd / "config.toml")
    plist = plistlib.loads(agent.to_bytes())
    assert plist["StandardOutPath"] == str(odd / "musicd.stdout.log")
    assert plist["ProgramArguments"][-1] == str(odd / "config.toml")


# --- launchctl calls --------------------------------------------------------------------------


def test_install_bootstraps_a_new_agent(env: Env) -> None:
    done = env.musicd("launchd", "install", "--config", str(env.config))
    assert done.returncode == 0, done.stderr
    assert env.calls() == [
        ["print", TARGET],
        ["enable", TARGET],
        ["bootstrap", f"gui/{UID}", str(env.plist_path)],
    ]
    assert env.is_loaded()


def test_reinstall_boots_out_the_loaded_agent_first(env: Env) -> None:
    env.set_loaded()
    done = env.musicd("launchd", "install", "--config", str(env.config))
    assert done.returncode == 0, done.stderr
    assert env.calls() == [
        ["print", TARGET],
        ["bootout", TARGET],
        ["print", TARGET],
        ["enable", TARGET],
        ["bootstrap", f"gui/{UID}", str(env.plist_path)],
    ]
    assert "replaced" in done.stdout


def test_reinstall_waits_until_launchd_has_forgotten_the_old_agent(env: Env) -> None:
    env.set_loaded()
    (env.state / "linger_after_bootout").write_text("2")
    done = env.musicd("launchd", "install", "--config", str(env.config))
    assert done.returncode == 0, done.stderr
    assert [c[0] for c in env.calls()] == [
        "print",
        "bootout",
        "print",
        "print",
        "print",
        "enable",
        "bootstrap",
    ]


def test_uninstall_boots_out_and_removes_the_plist(env: Env) -> None:
    assert env.musicd("launchd", "install").returncode == 0
    env.calls()
    done = env.musicd("launchd", "uninstall")
    assert done.returncode == 0, done.stderr
    assert env.calls() == [["print", TARGET], ["bootout", TARGET]]
    assert not env.plist_path.exists()
    assert not env.is_loaded()

    again = env.musicd("launchd", "uninstall")
    assert again.returncode == 0
    assert env.calls() == [["print", TARGET]]
    assert "was not installed" in again.stdout


def test_status_of_a_loaded_agent(env: Env) -> None:
    env.set_loaded()
    done = env.musicd("launchd", "status")
    assert done.returncode == 0, done.stderr
    assert env.calls() == [["print", TARGET]]
    assert "loaded, running, pid 123" in done.stdout
    assert "last exit status: 0" in done.stdout


def test_status_explains_a_config_error_exit(env: Env) -> None:
    env.set_loaded()
    # What the agent's `musicd run` does with a broken config: log config_invalid, exit 78.
    env.config.write_text("[log]\nlevle = 'debug'\n", encoding="utf-8")
    assert env.musicd("run", "--config", str(env.config)).returncode == 78
    (env.state / "last_exit").write_text("78: EX_CONFIG")
    done = env.musicd("launchd", "status")
    assert done.returncode == 0, done.stderr
    assert "last exit status: 78: EX_CONFIG (config error: " in done.stdout
    assert "log.levle" in done.stdout
    # The hint runs the same executable as this command (here `python -m daemon`).
    assert f"see '{sys.executable} -m daemon logs --level error'" in done.stdout


def test_status_explains_a_78_without_a_config_error_as_a_failed_start(env: Env) -> None:
    # launchd reports 78 when posix_spawn is refused (a program in ~/Documents, privacy): the
    # daemon never ran, so nothing is in its log.
    env.set_loaded()
    (env.state / "last_exit").write_text("78: EX_CONFIG")
    done = env.musicd("launchd", "status")
    assert done.returncode == 0, done.stderr
    assert "(config error:" not in done.stdout
    assert "launchd could not start the program" in done.stdout
    for cause in ("~/Documents", "brew", "Login Items", "-m daemon doctor"):
        assert cause in done.stdout


def test_a_start_after_a_config_error_is_not_blamed_on_the_config(env: Env) -> None:
    env.config.write_text("[log]\nlevle = 'debug'\n", encoding="utf-8")
    assert env.musicd("run", "--config", str(env.config)).returncode == 78
    found = env.home / ".local" / "state" / "musicd" / "musicd.log"
    assert found.exists()
    assert launchd.last_config_failure([found]) is not None
    with found.open("a") as fh:
        fh.write('{"event": "daemon_started", "timestamp": "2999-01-01T00:00:00Z"}\n')
    assert launchd.last_config_failure([found]) is None


def test_status_of_an_agent_that_is_not_loaded_exits_3(env: Env) -> None:
    done = env.musicd("launchd", "status")
    assert done.returncode == 3
    assert env.calls() == [["print", TARGET]]
    assert "not loaded" in done.stdout


def test_restart_kickstarts_the_agent(env: Env) -> None:
    env.set_loaded()
    done = env.musicd("launchd", "restart")
    assert done.returncode == 0, done.stderr
    assert env.calls() == [["kickstart", "-k", TARGET]]


def test_restart_of_an_agent_that_is_not_loaded_says_so(env: Env) -> None:
    done = env.musicd("launchd", "restart")
    assert done.returncode == 1
    assert (
        done.stderr == f"musicd: {LABEL} is not loaded; install it with 'musicd launchd install'\n"
    )


def test_a_failed_bootstrap_is_one_line_with_launchctls_reason(env: Env) -> None:
    (env.state / "fail_bootstrap").touch()
    done = env.musicd("launchd", "install")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "launchctl bootstrap" in done.stderr
    assert "5: Input/output error" in done.stderr


def test_install_refuses_a_broken_config_and_touches_nothing(env: Env) -> None:
    env.config.write_text("[log]\nlevle = 'debug'\n", encoding="utf-8")
    done = env.musicd("launchd", "install", "--config", str(env.config))
    assert done.returncode == 78
    assert "log.levle" in done.stderr
    assert env.calls() == []
    assert not env.plist_path.exists()


# --- without launchctl (Linux) ----------------------------------------------------------------


@pytest.mark.parametrize("action", ["install", "uninstall", "status", "restart"])
def test_without_launchctl_the_commands_say_so_and_fail(tmp_path: Path, action: str) -> None:
    env = make_env(tmp_path, with_launchctl=False)
    done = env.musicd("launchd", action)
    assert done.returncode == 69
    assert "launchctl not found on PATH" in done.stderr
    assert not (env.home / "Library").exists()


def test_dry_run_works_without_launchctl(tmp_path: Path) -> None:
    env = make_env(tmp_path, with_launchctl=False)
    done = env.musicd("launchd", "install", "--dry-run", "--config", str(env.config))
    assert done.returncode == 0, done.stderr
    plist = plistlib.loads(done.stdout.encode())  # stdout is the plist alone
    assert plist["Label"] == LABEL
    assert plist["ProgramArguments"][-1] == str(env.config)
    assert f"launchctl bootstrap gui/{UID} {env.plist_path}" in done.stderr
    assert not env.plist_path.exists()
    assert not env.log_dir.exists()


# --- reading `launchctl print` ----------------------------------------------------------------


def test_parse_print_reads_only_the_services_own_fields() -> None:
    text = f"""{TARGET} = {{
\tstate = not running
\tevent triggers = {{
\t\tcom.example.trigger = {{
\t\t\tstate = 1
\t\t\tpid = 999
\t\t}}
\t}}
\tlast exit code = 78: EX_CONFIG
\tlast terminating signal = Terminated: 15
}}"""
    status = parse_print(text)
    assert status.loaded
    assert status.state == "not running"
    assert status.pid is None
    assert status.last_exit_code == "78: EX_CONFIG"
    assert status.last_signal == "Terminated: 15"


def test_an_unknown_placeholder_in_the_template_is_an_error(tmp_path: Path) -> None:
    template = {**launchd._BUILTIN_TEMPLATE, "WorkingDirectory": "@STATE_DIR@"}
    with pytest.raises(LaunchdError, match="@STATE_DIR@"):
        launchd.render_agent(log_dir=tmp_path, template=template)


def test_install_warns_about_a_program_in_a_guarded_folder(env: Env) -> None:
    # launchd refuses to posix_spawn a program under ~/Documents (exit status 78).
    venv_bin = env.home / "Documents" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    python = venv_bin / "python3"
    python.symlink_to(sys.executable)
    env_vars = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MUSICD_CONFIG", "XDG_STATE_HOME", "XDG_CONFIG_HOME")
    }
    env_vars.update(HOME=str(env.home), PATH=str(env.bin_dir), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [str(python), "-m", "daemon", "launchd", "install", "--dry-run"],
        capture_output=True,
        text=True,
        env=env_vars,
        cwd=env.home,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "is in ~/Documents, where macOS does not let launchd start programs" in done.stderr
