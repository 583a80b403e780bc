"""`musicd completion bash|zsh`: a completion script generated from the argparse parser.

shtab writes it from the same parser that parses the command line, so a new subcommand or
option is completed without anyone editing a script. It is imported only by this command.
"""

from __future__ import annotations

import argparse

import shtab


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` ("bash" or "zsh")."""
    for action in _path_options(parser):
        action.complete = shtab.FILE  # type: ignore[attr-defined]
    script: str = shtab.complete(parser, shell=shell)
    return script if script.endswith("\n") else script + "\n"


def _path_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found: list[argparse.Action] = []
    for action in parser._actions:
        if action.metavar == "PATH":
            found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_path_options(child))
    return found
