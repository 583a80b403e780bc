"""The frozen, validated configuration and `load_config()`."""

from __future__ import annotations

import functools
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon import paths
from daemon.errors import ConfigError
from daemon.events import TRACK_ADDED, TRACK_MODIFIED, TRACK_REMOVED
from daemon.models import DEFAULT_SOURCES, TRACK_FIELDS

ExpandedPath = Annotated[Path, AfterValidator(paths.expand)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The default library.path for source = "music-app" (expanded like every path).
MUSIC_APP_LIBRARY_PATH = "~/Music/Music/Music Library.musiclibrary"


class LibraryConfig(_Section):
    path: ExpandedPath = Field(default_factory=paths.default_library_path)
    source: Literal["xml", "music-app"] = "xml"
    settle_seconds: float = Field(default=1.0, ge=0.0, le=600.0)
    # A file that never stops changing is still scanned this long after the first event.
    settle_max_seconds: float = Field(default=10.0, gt=0.0, le=3600.0)
    verify_seconds: float = Field(default=60.0, gt=0.0, le=86400.0)
    # A full comparison that bypasses any fast path runs at least this often.
    full_scan_interval_seconds: float = Field(default=7 * 86400.0, gt=0.0)
    # Removing more than this share of the snapshot at once needs confirmation.
    mass_removal_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    mass_removal_confirm_seconds: float = Field(default=300.0, ge=0.0)
    osascript_timeout_seconds: float = Field(default=120.0, gt=0.0)
    # A read still running after this long is reported (`read_stalled` in status) and left
    # running: a privacy prompt nobody sees or a hung network volume can block it for good.
    read_timeout_seconds: float = Field(default=600.0, gt=0.0, le=86400.0)

    @model_validator(mode="before")
    @classmethod
    def _default_path_for_source(cls, data: Any) -> Any:
        # Music.app's own library is a bundle, not the shared XML: its default path differs.
        if isinstance(data, dict) and data.get("source") == "music-app" and "path" not in data:
            return {**data, "path": MUSIC_APP_LIBRARY_PATH}
        return data


class StateConfig(_Section):
    dir: ExpandedPath = Field(default_factory=paths.default_state_dir)
    # After a change, a checkpoint makes everything committed durable against a power cut
    # within this long (every acknowledged write survives the process dying at once).
    flush_interval_seconds: float = Field(default=30.0, ge=0.0, le=86400.0)
    # Also sync the WAL on every commit: durable against a power cut at acknowledgement, at the
    # price of one fsync per commit round.
    sync_every_commit: bool = False


class JournalConfig(_Section):
    # Events older than this, or beyond the newest max_events, are trimmed in the background,
    # except what a consumer that committed its cursor within max_age_days still needs.
    max_age_days: float = Field(default=30.0, gt=0.0)
    max_events: int = Field(default=1_000_000, ge=1000)


def _known_sources(value: tuple[str, ...]) -> tuple[str, ...]:
    # The usual sources (DEFAULT_SOURCES) are always accepted: a config adding one keeps them.
    # Names are compared as the cache stores them; "*" accepts any name.
    extra: list[str] = []
    for raw in value:
        name = raw.strip().lower()
        if not name:
            raise ValueError("a source name must not be blank")
        if name not in DEFAULT_SOURCES and name not in extra:
            extra.append(name)
    return (*DEFAULT_SOURCES, *extra)


class CacheConfig(_Section):
    failed_ttl_seconds: float = Field(default=3600.0, ge=0.0)
    cleanup_interval_seconds: float = Field(default=3600.0, gt=0.0)
    # Sources a `cache.put` may name, besides the usual four (a typo would otherwise start a
    # cache of its own that nothing ever reads).
    sources: Annotated[tuple[str, ...], AfterValidator(_known_sources)] = DEFAULT_SOURCES


class ControlConfig(_Section):
    socket: ExpandedPath = Field(default_factory=paths.default_socket_path)
    max_subscriber_queue: int = Field(default=1000, ge=1)


class LogConfig(_Section):
    file: ExpandedPath = Field(default_factory=paths.default_log_file)
    level: Literal["debug", "info", "warning", "error"] = "info"
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    backups: int = Field(default=3, ge=0, le=100)


# A trigger's name, and the origins it may exclude: they name cursors and log lines.
_NAME = re.compile(r"[a-z0-9._-]{1,64}")
TrackEventType = Literal["track_added", "track_modified", "track_removed"]


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError("use 1 to 64 characters of a-z, 0-9, '.', '_' and '-'")
    return value


def _argv(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value or not value[0]:
        raise ValueError("give the program and its arguments as a non-empty list of strings")
    return value


def _track_fields(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    unknown = [name for name in value or () if name not in TRACK_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; the fields are {', '.join(TRACK_FIELDS)}")
    return value


class TriggerConfig(_Section):
    """One `[[triggers]]` table: a command the daemon starts when matching events lie past the
    trigger's cursor (journal/triggers.py)."""

    name: Annotated[str, AfterValidator(_name)]
    command: Annotated[tuple[str, ...], AfterValidator(_argv)]
    types: tuple[TrackEventType, ...] = Field(
        default=(TRACK_ADDED, TRACK_MODIFIED, TRACK_REMOVED), min_length=1
    )
    # Only the modifications that touch one of these (None: any); additions and removals match.
    fields: Annotated[tuple[str, ...] | None, AfterValidator(_track_fields)] = None
    # Events written by these origins do not start it (None: its own name).
    exclude_origins: tuple[Annotated[str, AfterValidator(_name)], ...] | None = None
    settle_seconds: float = Field(default=5.0, ge=0.0, le=3600.0)
    min_interval_seconds: float = Field(default=60.0, ge=0.0, le=86400.0)
    timeout_seconds: float = Field(default=600.0, gt=0.0, le=86400.0)

    @property
    def excluded_origins(self) -> frozenset[str]:
        return frozenset(self.exclude_origins if self.exclude_origins is not None else (self.name,))


class Config(_Section):
    library: LibraryConfig = Field(default_factory=LibraryConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    triggers: tuple[TriggerConfig, ...] = ()
    # Where this config came from (None: built-in defaults). Not a TOML key.
    source_path: Path | None = Field(default=None, exclude=True)
    # Why the file's triggers were not taken (None: they were, or there were none). Not a TOML
    # key: `load_config` sets it from the file's owner and mode.
    triggers_refused: str | None = Field(default=None, exclude=True)

    @field_validator("triggers")
    @classmethod
    def _unique_trigger_names(cls, value: tuple[TriggerConfig, ...]) -> tuple[TriggerConfig, ...]:
        names = [t.name for t in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"trigger name {twice[0]!r} is used twice; names must be unique")
        return value


def resolve_config_path(cli_path: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The config file to use and whether it was asked for explicitly (then it must exist)."""
    if cli_path:
        return Path(cli_path).expanduser(), True
    env = os.environ.get("MUSICD_CONFIG")
    if env:
        return Path(env).expanduser(), True
    return paths.default_config_path(), False


def _describe_problem(problem: Any) -> str:
    key = ".".join(str(p) for p in problem["loc"]) or "(top level)"
    if problem["type"] == "extra_forbidden":
        return f"unknown key '{key}'; remove it or check its spelling"
    given = problem.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    msg = str(problem["msg"]).removeprefix("Value error, ")
    return f"invalid value for '{key}'{shown}: {msg}"


def _config_error(err: ValidationError, origin: str) -> ConfigError:
    # Every problem at once: fixing them one run at a time is tedious.
    problems = [_describe_problem(p) for p in err.errors()]
    error = ConfigError(f"{origin}: " + "; ".join(problems))
    error.problems = problems
    return error


def config_from_mapping(data: dict[str, Any], origin: str = "config") -> Config:
    for key in ("source_path", "triggers_refused"):
        if key in data:
            raise ConfigError(f"{origin}: unknown key '{key}'; remove it")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise _config_error(err, origin) from None


def _anchor_relative_paths(cfg: Config, base: Path) -> Config:
    """Relative paths in a config file are relative to the file, not to the daemon's cwd."""
    fix = functools.partial(paths.anchored, config_dir=base)
    return cfg.model_copy(
        update={
            "library": cfg.library.model_copy(update={"path": fix(cfg.library.path)}),
            "state": cfg.state.model_copy(update={"dir": fix(cfg.state.dir)}),
            "control": cfg.control.model_copy(update={"socket": fix(cfg.control.socket)}),
            "log": cfg.log.model_copy(update={"file": fix(cfg.log.file)}),
        }
    )


def load_config(cli_path: str | os.PathLike[str] | None = None) -> Config:
    """Load, validate and freeze the configuration.

    Raises:
        ConfigError: with a one-line message naming the file and the bad key.
    """
    path, explicit = resolve_config_path(cli_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"config file {path} does not exist; create it (see config/config.toml) "
                "or leave out --config/MUSICD_CONFIG to use the defaults"
            ) from None
        return Config()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    cfg = _anchor_relative_paths(config_from_mapping(data, str(path)), path.parent)
    cfg = cfg.model_copy(update={"source_path": path})
    if cfg.triggers:
        refused = unsafe_for_commands(path)
        if refused is not None:
            cfg = cfg.model_copy(update={"triggers": (), "triggers_refused": refused})
    paths.check_socket_path(cfg.control.socket)
    return cfg


def unsafe_for_commands(path: Path) -> str | None:
    """Why the commands of the config file at `path` must not be run (None: they may).

    A trigger runs its command as the daemon's user, so whoever can write the file can run
    anything as that user: the file must be the user's and writable by nobody else.
    """
    try:
        st = path.stat()
    except OSError as err:
        return f"cannot check {path}: {err.strerror}"
    if st.st_uid != os.geteuid():
        return (
            f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}); "
            "triggers are read only from a config file you own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"{path} is writable by its group or by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run 'chmod go-w {path}' to let its triggers run"
        )
    return None
