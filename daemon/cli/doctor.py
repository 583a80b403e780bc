"""`musicd doctor`: run the checks in daemon/mac/doctor.py and print one line each (or JSON)."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli.command import Output, Subcommands, add_command


def register(sub: Subcommands) -> None:
    """Add `musicd doctor` to the CLI."""
    add_command(
        sub,
        "doctor",
        "check this machine's setup and say what to fix (exit 1 when a check failed)",
        cmd_doctor,
        description="Checks, in order: the config, the library (exists, right kind, readable, "
        "parses / Music.app answers), the state dir and database, the running daemon, the "
        "launchd agent (macOS only) and the log file. One line per check: ok, warn, fail "
        "(with the fix) or skip.",
        json_help="print the checks as JSON",
    )


def cmd_doctor(args: argparse.Namespace) -> Output:
    # The checks import the config model and the stores: only when this command runs.
    from daemon.mac.doctor import failed, run_checks

    checks = run_checks(args.config, rescan_command=args.invocation.command("rescan"))

    def show(_: Any) -> None:
        for check in checks:
            print(check.line(), flush=True)

    return Output([c.as_dict() for c in checks], show, status=1 if failed(checks) else 0)
