from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from daemon.config import Config, LibraryConfig, config_from_mapping, load_config
from daemon.errors import EX_CONFIG, ConfigError
from daemon.models import DEFAULT_SOURCES
from daemon.paths import check_socket_path, library_kind_matches

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_documented_default_config_loads_and_matches_the_builtin_defaults() -> None:
    cfg = load_config(REPO / "config" / "config.toml")
    assert cfg.library.source == "xml"
    assert cfg.library.settle_seconds == 1.0
    assert cfg.library.verify_seconds == 60.0
    assert cfg.cache.failed_ttl_seconds == 3600.0
    assert cfg.library.path.is_absolute()


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The model of a config section: `Section` for a table, `list[Section]` for an array of
    tables; None for a plain value."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def test_the_documented_config_names_every_key_of_the_model() -> None:
    # A new config key is documented where people look for it: config/config.toml, which
    # `musicd check-config` and the README point to. Commented-out keys count.
    doc = (REPO / "config" / "config.toml").read_text(encoding="utf-8")
    missing = []
    for section, field in Config.model_fields.items():
        model = _section_model(field.annotation)
        if field.exclude or model is None:
            continue
        if not re.search(rf"^#? ?\[\[?{section}\]\]?$", doc, re.M):
            missing.append(f"[{section}]")
        missing += [
            f"{section}.{key}"
            for key in model.model_fields
            if not re.search(rf"^#? ?{key} =", doc, re.M)
        ]
    assert missing == []


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[library]\nsettle_secs = 2\n")
    with pytest.raises(ConfigError, match=r"unknown key 'library\.settle_secs'") as info:
        load_config(path)
    assert info.value.exit_status == EX_CONFIG == 78


def test_bad_value_names_the_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[library]\nsource = "itunes"\n')
    with pytest.raises(ConfigError, match=r"library\.source.*'itunes'"):
        load_config(path)


def test_negative_interval_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[state]\nflush_interval_seconds = -1\n")
    with pytest.raises(ConfigError, match=r"state\.flush_interval_seconds"):
        load_config(path)


def test_broken_toml_is_a_one_line_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[library\npath = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_env_var_picks_the_file_and_relative_paths_follow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[library]\npath = "lib/Library.xml"\n[state]\ndir = "st"\n')
    monkeypatch.setenv("MUSICD_CONFIG", str(path))
    cfg = load_config()
    assert cfg.library.path == tmp_path / "lib" / "Library.xml"
    assert cfg.state.dir == tmp_path / "st"
    assert cfg.source_path == path


def test_too_long_socket_path_is_refused(tmp_path: Path) -> None:
    long = "/tmp/" + "x" * 120 + "/musicd.sock"
    path = write(tmp_path, f'[control]\nsocket = "{long}"\n')
    with pytest.raises(ConfigError, match="socket"):
        load_config(path)
    with pytest.raises(ConfigError):
        check_socket_path(Path(long))


def test_cache_sources_keep_the_usual_five_and_add_the_users() -> None:
    # Every source GenreUpdater asks, "itunes" included.
    assert config_from_mapping({}).cache.sources == DEFAULT_SOURCES
    assert DEFAULT_SOURCES == ("musicbrainz", "discogs", "lastfm", "spotify", "itunes")
    cfg = config_from_mapping({"cache": {"sources": [" AllMusic", "discogs", "allmusic"]}})
    assert cfg.cache.sources == (*DEFAULT_SOURCES, "allmusic")
    with pytest.raises(ConfigError, match=r"cache\.sources.*must not be blank"):
        config_from_mapping({"cache": {"sources": ["  "]}})


def test_every_problem_is_in_the_message_and_listed() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(
            {"library": {"settle_seconds": -1, "nope": 1}, "log": {"level": "loud"}}, "c.toml"
        )
    message = str(info.value)
    assert "\n" not in message and message.startswith("c.toml: ")
    assert len(info.value.problems) == 3
    for key in ("library.settle_seconds", "library.nope", "log.level"):
        assert key in message


def test_each_library_source_reads_one_kind_of_path(tmp_path: Path) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(b"x")
    file_mode = library.stat().st_mode
    dir_mode = tmp_path.stat().st_mode
    sources = get_args(LibraryConfig.model_fields["source"].annotation)
    assert set(sources) == {"xml", "music-app"}  # a new source decides its kind in paths.py
    assert library_kind_matches("xml", file_mode) and not library_kind_matches("xml", dir_mode)
    assert library_kind_matches("music-app", dir_mode)
    assert not library_kind_matches("music-app", file_mode)
