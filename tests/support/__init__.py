"""Helpers shared by the tests and the benchmarks.

- `common`: the repository's place, short temp dirs, deadline waits;
- `library`: library files, read, edited and written as Music.app does, and synthetic ones;
- `database`: the state database read as another program reads it, a seeded cache;
- `runner`: the daemon itself, a real subprocess on a temp config (`daemon_env`).
"""

from tests.support.common import REPO, SHARED_FIXTURES, read_json, short_tempdir, umask, wait_for
from tests.support.database import (
    SOURCES,
    database_problems,
    db_cache_entries,
    db_meta,
    db_seed_cache,
    db_tracks,
    journal_seqs,
)
from tests.support.library import (
    PLIST_KEYS,
    SynthLibrary,
    album_of,
    artist_of,
    edit_tracks,
    expected_track,
    find_track,
    load_plist,
    render_plist,
    sample_library_bytes,
    save_plist,
    set_track_keys,
    write_library,
)
from tests.support.runner import DaemonProc, daemon_env, write_config

__all__ = [
    "PLIST_KEYS",
    "REPO",
    "SHARED_FIXTURES",
    "SOURCES",
    "DaemonProc",
    "SynthLibrary",
    "album_of",
    "artist_of",
    "daemon_env",
    "database_problems",
    "db_cache_entries",
    "db_meta",
    "db_seed_cache",
    "db_tracks",
    "edit_tracks",
    "expected_track",
    "find_track",
    "journal_seqs",
    "load_plist",
    "read_json",
    "render_plist",
    "sample_library_bytes",
    "save_plist",
    "set_track_keys",
    "short_tempdir",
    "umask",
    "wait_for",
    "write_config",
    "write_library",
]
