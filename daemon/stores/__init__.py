"""The daemon's persisted state: library snapshot, API response cache, delta state.

Each store is changed in memory on the event loop thread, and saved in two steps: `capture()`
on the loop (cheap: copies references, serialises nothing), then `.write()` of what it returned
in a worker thread (serialise, write atomically). A write records what it saved, so `dirty`
stays true when something changed after the capture; overlapping writes of one store are
serialised and an older capture never replaces a newer file.

    save = store.capture()
    await anyio.to_thread.run_sync(save.write)
"""

from __future__ import annotations

from daemon.stores._atomic import (
    ensure_private_dir,
    load_json_or_quarantine,
    load_or_quarantine,
    write_atomic,
)
from daemon.stores.api_cache import ApiCache, ApiCacheSave, CachedApiResult
from daemon.stores.delta import DeltaSave, DeltaState
from daemon.stores.snapshot import SnapshotMeta, SnapshotSave, SnapshotStore

__all__ = [
    "ApiCache",
    "ApiCacheSave",
    "CachedApiResult",
    "DeltaSave",
    "DeltaState",
    "SnapshotMeta",
    "SnapshotSave",
    "SnapshotStore",
    "ensure_private_dir",
    "load_json_or_quarantine",
    "load_or_quarantine",
    "write_atomic",
]
