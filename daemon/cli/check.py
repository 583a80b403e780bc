"""`musicd check-config`: the config file, and whether the library it names can work.

A config that validates can still point at a library the daemon cannot use (a directory where
the XML file belongs, a file that is not a library): say so here, every problem at once, instead
of letting the daemon start and log the first one. Errors exit 78 (EX_CONFIG); warnings (a
library that does not exist yet) do not.
"""

from __future__ import annotations

import argparse
import os
import stat as stat_mod
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.cli.command import Output, Subcommands, add_command
from daemon.cli.format import size
from daemon.errors import EX_CONFIG, ConfigError, LibraryReadError
from daemon.paths import library_is_dir, library_kind_matches

BIG_LIBRARY_BYTES = 20_000_000


@dataclass
class Report:
    config: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    library: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.errors,
            "config": self.config,
            "errors": self.errors,
            "warnings": self.warnings,
            "library": self.library,
            "values": self.values,
        }


def register(sub: Subcommands) -> None:
    """Add `musicd check-config` to the CLI."""
    add_command(
        sub,
        "check-config",
        "validate the config file and the library it names, and show the result",
        cmd_check_config,
        description="Validate the config file, check that the library it names can be read, "
        "and show every value in use. Lists every problem at once; exit status 78 if any.",
        json_help="print JSON for scripts",
    )


def cmd_check_config(args: argparse.Namespace) -> Output:
    """Check the config and the library: the report, exit status 78 when it found an error."""
    from daemon.config import load_config, resolve_config_path  # pydantic: only here

    config_arg: str | None = args.config
    report = Report()
    path, explicit = resolve_config_path(config_arg)
    report.config = str(path) if explicit or path.exists() else None
    try:
        cfg = load_config(config_arg)
    except ConfigError as err:
        report.errors.extend(err.problems)
    else:
        # Every section of the model (source_path is excluded from dumps: not a TOML key).
        report.values = cfg.model_dump(mode="json")
        source = cfg.library.source
        report.library = {"path": str(cfg.library.path), "source": source}
        _check_library(report, cfg.library.path, source)
        _check_writable_dir(report, "state.dir", cfg.state.dir)
        _check_writable_dir(report, "log.file's directory", cfg.log.file.parent)
    return Output(report.as_dict(), _print, status=EX_CONFIG if report.errors else 0)


def _print(report: dict[str, Any]) -> None:
    """The report of `Report.as_dict`, for people."""
    where = report["config"] or "built-in defaults (no config file found)"
    if report["errors"]:
        count = len(report["errors"])
        print(f"config NOT OK: {where}: {count} problem{'s' if count != 1 else ''}")
    else:
        print(f"config OK: {where}")
    for message in report["errors"]:
        print(f"  error: {message}")
    for message in report["warnings"]:
        print(f"  warning: {message}")
    library = report["library"]
    if "tracks" in library:
        print(f"  library: {library['tracks']} tracks in {library['path']} ({library['source']})")
    for section, values in report["values"].items():
        # [[triggers]] is a list of tables: each shown under its index.
        tables = values if isinstance(values, list) else [values]
        for index, table in enumerate(tables):
            where = f"{section}[{index}]" if isinstance(values, list) else section
            for key, value in table.items():
                print(f"  {where}.{key} = {value}")


def _check_library(report: Report, path: Path, source: str) -> None:
    key = f"library.path {path}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        report.warnings.append(
            f"{key} does not exist (yet); the daemon waits for it to appear"
            + (
                " (turn on Music > Settings > Files > 'Share Library XML with other applications')"
                if source == "xml"
                else ""
            )
        )
        return
    except OSError as err:
        report.errors.append(f"{key} cannot be read: {err.strerror}")
        return
    matches = library_kind_matches(source, st.st_mode)
    if library_is_dir(source):
        if not matches:
            report.errors.append(
                f'{key} is a file, but source = "music-app" needs the Music Library.musiclibrary '
                'bundle (a directory); for a Library.xml file use source = "xml"'
            )
        elif not os.access(path, os.R_OK | os.X_OK):
            report.errors.append(f"{key} is not readable by this user")
        if sys.platform != "darwin":
            report.warnings.append('source = "music-app" works on macOS only')
        return
    if stat_mod.S_ISDIR(st.st_mode):
        hint = (
            '; it looks like a Music.app library bundle: use source = "music-app", or point '
            "library.path at the shared Library.xml"
            if path.suffix == ".musiclibrary"
            else "; point library.path at the Library.xml file"
        )
        report.errors.append(f'{key} is a directory, but source = "xml" needs a file{hint}')
        return
    if not matches:
        report.errors.append(f"{key} is not a regular file")
        return
    if not os.access(path, os.R_OK):
        report.errors.append(f"{key} is not readable by this user")
        return
    from daemon.library.xml_reader import read_library_xml

    if sys.stderr.isatty() and st.st_size > BIG_LIBRARY_BYTES:
        # A big library takes seconds to read: say why nothing is printed yet.
        print(f"reading {path} ({size(st.st_size)}) ...", file=sys.stderr, flush=True)
    try:
        read = read_library_xml(path)
    except LibraryReadError as err:
        report.errors.append(f"{key} is not a usable library: {err}")
        return
    report.library["tracks"] = len(read.tracks)
    report.warnings.extend(f"{key}: {warning}" for warning in read.warnings)


def _check_writable_dir(report: Report, what: str, directory: Path) -> None:
    """The directory, or its nearest existing ancestor (it is created at start), is writable."""
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        report.errors.append(f"{what} {directory}: {probe} is not a directory")
    elif not os.access(probe, os.W_OK | os.X_OK):
        created = "" if probe == directory else f" (it would be created in {probe})"
        report.errors.append(f"{what} {directory} is not writable by this user{created}")
