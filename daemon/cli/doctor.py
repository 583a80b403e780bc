"""`musicd doctor`: run the checks in daemon/doctor.py and print one line each (or JSON)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(sub: Any, add_config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `musicd doctor` to the CLI."""
    doctor: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="check this machine's setup and say what to fix (exit 1 when a check failed)",
        description="Checks, in order: the config, the library (exists, right kind, readable, "
        "parses / Music.app answers), the state dir and database, the running daemon, the "
        "launchd agent (macOS only) and the log file. One line per check: ok, warn, fail "
        "(with the fix) or skip.",
    )
    add_config_arg(doctor)
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    import orjson

    from daemon.doctor import failed, run_checks

    checks = run_checks(args.config)
    if args.json:
        print(orjson.dumps([c.as_dict() for c in checks], option=orjson.OPT_INDENT_2).decode())
    else:
        for check in checks:
            print(check.line(), flush=True)
    return 1 if failed(checks) else 0
