"""The daemon's state: one SQLite database, `state.dir/musicd.db` (see schema.py).

- schema.py: tables, migrations, connections; database.py: opening, checking, rebuilding;
- tracks.py, cache.py, journal.py: the snapshot, the API cache, the change journal with its
  cursors and metadata, as functions of a connection;
- writer.py: the one writer task (group commit; answered after commit);
- legacy.py: importing older state files and the original application's cache file.
"""
