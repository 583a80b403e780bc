"""`musicd check-config`: every problem at once, and a library that cannot work is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from daemon.config import Config
from tests.support import sample_library_bytes

pytestmark = pytest.mark.timeout(60)


def check(config: Path, *more: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MUSICD_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "--config", str(config), *more],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def config_for(root: Path, library: str | Path, *extra: str) -> Path:
    path = root / "config.toml"
    lines = ["[library]", f'path = "{library}"', *extra]
    lines += ["[state]", f'dir = "{root / "state"}"', "[log]", f'file = "{root / "musicd.log"}"']
    lines += ["[control]", 'socket = "/tmp/musicd-check.sock"']  # never bound; short on macOS
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_good_library_is_ok_and_counted(tmp_path: Path) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(sample_library_bytes())
    result = check(config_for(tmp_path, library))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("config OK: ")
    assert f"library: 39 tracks in {library} (xml)" in result.stdout


def test_a_missing_library_is_a_warning(tmp_path: Path) -> None:
    result = check(config_for(tmp_path, tmp_path / "nowhere.xml"))
    assert result.returncode == 0
    assert "warning: library.path" in result.stdout and "does not exist" in result.stdout


def test_a_directory_for_xml_fails(tmp_path: Path) -> None:
    bundle = tmp_path / "Music Library.musiclibrary"
    bundle.mkdir()
    result = check(config_for(tmp_path, bundle))
    assert result.returncode == 78
    assert 'is a directory, but source = "xml" needs a file' in result.stdout
    assert 'use source = "music-app"' in result.stdout


def test_a_file_for_music_app_fails(tmp_path: Path) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(sample_library_bytes())
    result = check(config_for(tmp_path, library, 'source = "music-app"'))
    assert result.returncode == 78
    assert 'is a file, but source = "music-app" needs' in result.stdout


def test_a_garbage_file_fails_with_the_parsers_reason(tmp_path: Path) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(b"this is not a plist\n")
    result = check(config_for(tmp_path, library))
    assert result.returncode == 78
    assert "is not a usable library: " in result.stdout
    assert "not well-formed XML at line 1" in result.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_library_fails(tmp_path: Path) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(sample_library_bytes())
    library.chmod(0)
    result = check(config_for(tmp_path, library))
    assert result.returncode == 78
    assert "is not readable by this user" in result.stdout


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[library]\nsettle_seconds = -1\nsettle_secs = 2\n[cache]\nfailed_ttl_seconds = 'x'\n"
        "[log]\nlevel = 'loud'\n",
        encoding="utf-8",
    )
    result = check(config)
    assert result.returncode == 78
    errors = [line for line in result.stdout.splitlines() if line.startswith("  error: ")]
    assert len(errors) == 4, result.stdout
    assert "4 problems" in result.stdout
    assert "more problem" not in result.stdout
    for key in ("library.settle_seconds", "library.settle_secs", "failed_ttl_seconds", "log.level"):
        assert any(key in line for line in errors), key


def test_json_has_the_problems_and_the_values(tmp_path: Path) -> None:
    result = check(config_for(tmp_path, tmp_path), "--json")
    assert result.returncode == 78
    report = orjson.loads(result.stdout)
    assert report["ok"] is False
    assert len(report["errors"]) == 1 and "is a directory" in report["errors"][0]
    assert report["values"]["library"]["path"] == str(tmp_path)
    assert report["values"]["cache"]["sources"][:4] == [
        "musicbrainz",
        "discogs",
        "lastfm",
        "spotify",
    ]


def test_the_values_shown_are_every_section_of_the_config(tmp_path: Path) -> None:
    report = orjson.loads(check(config_for(tmp_path, tmp_path), "--json").stdout)
    sections = [name for name, spec in Config.model_fields.items() if not spec.exclude]
    assert "journal" in sections
    assert list(report["values"]) == sections


def test_each_trigger_is_shown_under_its_index(tmp_path: Path) -> None:
    library = tmp_path / "Library.xml"
    library.write_bytes(sample_library_bytes())
    config = config_for(tmp_path, library)
    with config.open("a") as fh:
        fh.write('[[triggers]]\nname = "genre-updater"\ncommand = ["/bin/true"]\n')
    result = check(config)
    assert result.returncode == 0, result.stdout
    assert "  triggers[0].name = genre-updater\n" in result.stdout
    assert "  triggers[0].exclude_origins = None\n" in result.stdout
