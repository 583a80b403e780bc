"""`musicd launchd install|uninstall|status|restart`: musicd as a per-user launchd agent."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from daemon.cli.command import Subcommands, add_command, add_group
from daemon.cli.hints import Invocation
from daemon.errors import EX_CONFIG, EXIT_NOT_RUNNING


def register(sub: Subcommands) -> None:
    """Add `musicd launchd …` to the CLI."""
    actions = add_group(
        sub,
        "launchd",
        "run musicd as a per-user launchd agent (macOS)",
        actions_help="install, uninstall, status or restart",
        description="Install musicd as a launchd agent that starts at login and is restarted "
        "after a crash (not after 'musicd stop').",
    )

    install = add_command(
        actions,
        "install",
        "write ~/Library/LaunchAgents/io.musicd.agent.plist and load it",
        cmd_install,
    )
    install.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plist (stdout) and the commands (stderr); change nothing",
    )

    uninstall = actions.add_parser(
        "uninstall",
        help="unload the agent and remove its plist",
        description="Unload the agent (launchctl bootout) and remove its plist.",
    )
    uninstall.set_defaults(handler=cmd_uninstall)

    status = actions.add_parser(
        "status", help="loaded or not, pid, last exit status (exit 3 when not loaded)"
    )
    status.set_defaults(handler=cmd_status)

    restart = actions.add_parser("restart", help="restart the agent (launchctl kickstart -k)")
    restart.set_defaults(handler=cmd_restart)


def cmd_install(args: argparse.Namespace) -> int:
    from daemon.mac import launchd

    agent = launchd.agent_for_config(args.config)
    _warn_protected(agent)
    if args.dry_run:
        print(agent.to_bytes().decode(), end="", flush=True)
        print(f"# would write {agent.plist_path} (the plist above), then run:", file=sys.stderr)
        for command in launchd.install_commands(agent):
            note = "   # only if already loaded" if command[1:2] == ["bootout"] else ""
            print(f"{shlex.join(command)}{note}", file=sys.stderr)
        return 0
    launchctl = launchd.Launchctl.find()
    replaced = launchd.install(agent, launchctl)
    print(f"wrote {agent.plist_path}")
    what = "replaced the loaded agent" if replaced else "loaded"
    print(f"{what} {agent.label} in {launchctl.domain}: it runs now and at every login")
    config = (
        agent.plist["ProgramArguments"][-1]
        if "--config" in agent.plist["ProgramArguments"]
        else None
    )
    follow = args.invocation.command("logs", "-f", config=False, socket=False) + (
        f" --config {shlex.quote(config)}" if config else ""
    )
    print(f"logs: {follow}   (launchd's own output: {agent.log_dir})")
    return 0


def _warn_protected(agent: Any) -> None:
    """launchd cannot start a program in a privacy-guarded folder (it exits with 78)."""
    from pathlib import Path

    from daemon.library.access import protected_folder

    program = agent.plist["ProgramArguments"][0]
    where = protected_folder(Path(program))
    if where is not None:
        print(
            f"musicd: warning: {program} is in {where}, where macOS does not let launchd start "
            "programs (exit status 78): move the virtualenv elsewhere (e.g. "
            "~/.local/share/musicd) and install from there",
            file=sys.stderr,
        )


def cmd_uninstall(args: argparse.Namespace) -> int:
    from daemon.mac import launchd

    launchctl = launchd.Launchctl.find()
    plist_path = launchd.launch_agents_dir() / f"{launchd.LABEL}.plist"
    was_loaded, removed = launchd.uninstall(launchctl)
    if was_loaded:
        print(f"unloaded {launchd.LABEL} from {launchctl.domain}")
    if removed:
        print(f"removed {plist_path}")
    if not was_loaded and not removed:
        print(f"{launchd.LABEL} was not installed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from daemon.mac import launchd

    launchctl = launchd.Launchctl.find()
    status = launchctl.status(launchd.LABEL)
    plist = launchd.installed_plist()
    plist_path = launchd.launch_agents_dir() / f"{launchd.LABEL}.plist"
    if not status.loaded:
        where = f"plist at {plist_path}" if plist is not None else "not installed"
        install = args.invocation.command("launchd", "install", socket=False)
        print(f"{launchd.LABEL}: not loaded ({where}; '{install}' loads it)")
        return EXIT_NOT_RUNNING
    running = f", pid {status.pid}" if status.pid is not None else ""
    print(f"{launchd.LABEL}: loaded, {status.state or 'state unknown'}{running}")
    last = status.last_exit_code or "unknown"
    explained = _explain_exit(last, status.last_signal, plist, args.invocation)
    print(f"  last exit status: {last}{explained}")
    print(f"  plist: {plist_path}" + ("" if plist is not None else " (missing)"))
    if plist is not None and plist.get("StandardErrorPath"):
        print(f"  launchd output: {plist['StandardErrorPath']}")
    return 0


def _explain_exit(
    code: str, signal: str | None, plist: dict[str, Any] | None, invocation: Invocation
) -> str:
    if signal:
        return f" (killed by {signal})"
    # launchctl says "0", "78: EX_CONFIG" or "(never exited)".
    number = code.split(":")[0].strip()
    if number == str(EX_CONFIG):
        from daemon.mac import launchd

        logs = invocation.command("logs", "--level", "error", socket=False)
        # launchd also reports 78 when it could not start the program at all (posix_spawn
        # refused): only a config failure in the log makes it a config error.
        error = launchd.last_config_failure(launchd.agent_log_files(plist))
        if error is not None:
            return f" (config error: {error}; see '{logs}'; restarts are throttled)"
        install = invocation.command("launchd", "install", socket=False)
        doctor = invocation.command("doctor", socket=False)
        return (
            "\n  launchd could not start the program (no config error was logged). Likely: "
            "macOS privacy refused it (a program or virtualenv in ~/Documents, ~/Desktop or "
            "~/Downloads: move it and install again), its interpreter is gone (after 'brew "
            f"upgrade': run '{install}' again), or musicd was switched off in "
            f"System Settings > General > Login Items. '{doctor}' checks these."
        )
    if number.isdigit() and number != "0":
        return f" (see '{invocation.command('logs', '--level', 'warning', socket=False)}')"
    return ""


def cmd_restart(args: argparse.Namespace) -> int:
    from daemon.mac import launchd

    launchctl = launchd.Launchctl.find()
    launchctl.kickstart(launchd.LABEL)
    print(f"restarted {launchd.LABEL}")
    return 0
