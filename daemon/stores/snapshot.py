"""The persisted library snapshot: every kept track in library order, plus its metadata.

`snapshot.json` holds the tracks as compact rows (`{"version", "fields", "tracks": [[...]]}`)
so that a tool, or the daemon at start, loads 100k tracks in a fraction of a second.
`snapshot.meta.json` says which version of the library file the snapshot reflects and carries
the blake2b hash of `snapshot.json`, which is how a torn pair of files is recognised.

Mutations run on the event loop thread and are cheap; `capture()` copies references only, and
the returned `SnapshotSave.write()` does the serialisation and disk I/O in a worker thread.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, make_dataclass
from functools import partial
from itertools import repeat, starmap
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args, get_type_hints

import orjson
import structlog
from pydantic import BaseModel, Field

from daemon.library import FileStat
from daemon.models import TRACK_FIELDS, Track, album_key
from daemon.stores._atomic import (
    SaveTracker,
    ensure_private_dir,
    load_json_or_quarantine,
    load_or_quarantine,
    paused_gc,
    write_atomic,
)

log = structlog.get_logger(__name__)

SNAPSHOT_VERSION: Final = 1
META_VERSION: Final = 1
SNAPSHOT_FILE: Final = "snapshot.json"
META_FILE: Final = "snapshot.meta.json"

_FIELDS = list(TRACK_FIELDS)
_row_of = attrgetter(*TRACK_FIELDS)
# Rows serialised per orjson call. Each call holds the GIL, so while a worker thread writes the
# snapshot the event loop waits for one chunk at most (a few ms), never for the whole file.
_DUMP_CHUNK: Final = 4096


# Loading 100k tracks is mostly building them, and a frozen dataclass's __init__ sets each field
# through object.__setattr__. _TrackRow has Track's slots in the same order but a plain __init__:
# rows are built as those, then made Tracks (a compatible layout, so Python allows the __class__
# change). The results are ordinary Tracks, made about 2.5 times faster; a row of the wrong
# length still raises TypeError.
_TrackRow = make_dataclass("_TrackRow", [(name, Any) for name in TRACK_FIELDS], slots=True)


def _build_tracks(rows: list[Any]) -> dict[str, Track]:
    """{persistent id: Track(*row)} for rows of TRACK_FIELDS values."""
    built = list(starmap(_TrackRow, rows))
    deque(map(object.__setattr__, built, repeat("__class__"), repeat(Track)), maxlen=0)
    return dict(zip(map(_first, rows), cast(list[Track], built), strict=True))


def _check_track_builder() -> None:
    row = Track("0123456789ABCDEF", name="n", year=1, compilation=True).to_row()
    assert not hasattr(Track, "__post_init__")
    (built,) = _build_tracks([row]).values()
    assert type(built) is Track and built == Track(*row) and built.to_row() == row


_first = itemgetter(0)


def _dumps_snapshot(tracks: list[Track]) -> bytes:
    """The bytes of orjson.dumps({"version", "fields", "tracks": rows}), built chunk by chunk."""
    head = orjson.dumps({"version": SNAPSHOT_VERSION, "fields": _FIELDS, "tracks": []})
    parts = [
        orjson.dumps(list(map(_row_of, tracks[i : i + _DUMP_CHUNK])))[1:-1]
        for i in range(0, len(tracks), _DUMP_CHUNK)
    ]
    return head[:-2] + b",".join(parts) + b"]}"


AlbumKey = tuple[str, str]


class SnapshotMeta(BaseModel):
    """What the snapshot reflects; `snapshot.meta.json`."""

    version: Literal[1] = META_VERSION
    library_path: str | None = None
    # The library file's stat taken before the read that produced the snapshot. None means
    # "unknown": the next start must reconcile with a full scan.
    library_mtime_ns: int | None = None
    library_size: int | None = None
    library_inode: int | None = None
    # Unix time of the last scan of any kind that the snapshot reflects.
    last_scan: float | None = None
    # Unix time of the last full comparison (the periodic one that verifies any fast path);
    # the scanner schedules the next one from it. last_force_scan_time is the seed's name for
    # the same moment: both are kept across the scans in between.
    last_full_scan: float | None = None
    last_force_scan_time: float | None = None
    track_count: int = Field(default=0, ge=0)
    # blake2b-128 (hex) of the exact bytes of snapshot.json.
    snapshot_hash: str = ""
    # The sequence number of the last event applied to the snapshot.
    last_seq: int = 0
    saved_at: float | None = None
    # Album keys whose API cache invalidation is not yet known to be on disk: replayed on
    # the cache at start. Kept here, the one copy (see add/discard_pending_invalidations).
    pending_invalidations: list[tuple[str, str]] = Field(default_factory=list)

    def library_stat(self) -> FileStat | None:
        """The library file stat the snapshot was taken from, if known."""
        if self.library_mtime_ns is None or self.library_size is None or self.library_inode is None:
            return None
        return FileStat(self.library_mtime_ns, self.library_size, self.library_inode)


def snapshot_digest(data: bytes) -> str:
    """The hash recorded in the meta for the bytes of snapshot.json."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class SnapshotStore:
    """The library snapshot in memory, and its files in `state_dir`.

    `tracks` maps persistent id to Track in library order. Mutate it only through the methods
    here so that `dirty` and the album index stay right.
    """

    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / SNAPSHOT_FILE
        self.meta_path = state_dir / META_FILE
        self.tracks: dict[str, Track] = {}
        self.meta = SnapshotMeta()
        self._clock = clock
        self._saves = SaveTracker()
        # Counts changes of the tracks alone: a save where only the meta changed (a scan that
        # found nothing, e.g. after a play-count update) rewrites the small meta file only.
        self._tracks_revision = 0
        self._on_disk = _OnDisk()
        # album key -> persistent ids (an ordered set); built on the first album query.
        self._album_index: dict[AlbumKey, dict[str, None]] | None = None

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> bool:
        """Load the files; True if a valid snapshot was loaded (it may hold zero tracks).

        A missing or unusable snapshot.json leaves the store empty. A usable snapshot.json whose
        meta is missing, unusable or does not match its hash keeps its tracks, with a rebuilt
        meta whose library stat is unknown, so the reconciliation scan compares everything.
        """
        started = time.perf_counter()
        meta = load_json_or_quarantine(self.meta_path, _parse_meta, what="snapshot meta")
        expected = meta.snapshot_hash if meta is not None else None
        with paused_gc():
            loaded = load_or_quarantine(
                self.path, partial(_parse_snapshot, expected_hash=expected), what="snapshot"
            )
            if loaded is not None:
                freeze_if_big(len(loaded[0]))
        self._album_index = None
        self._tracks_revision = 0
        if loaded is None:
            self._on_disk = _OnDisk()
            self.tracks = {}
            # The sequence only moves forward, and invalidations still owed to the API cache
            # survive, whatever happened to the snapshot.
            self.meta = (
                SnapshotMeta(
                    last_seq=meta.last_seq, pending_invalidations=meta.pending_invalidations
                )
                if meta is not None
                else SnapshotMeta()
            )
            if meta is not None:
                log.warning("snapshot_missing", path=str(self.path), meta_path=str(self.meta_path))
            return False
        tracks, digest, verified = loaded
        self.tracks = tracks
        self._on_disk = _OnDisk(tracks_revision=0, digest=digest)
        if meta is not None and verified:
            self.meta = meta
        else:
            # Timestamps kept from a stale meta are older than the truth, which only makes the
            # next full comparison come sooner; the stat is dropped so a full scan follows.
            base = meta if meta is not None else SnapshotMeta()
            self.meta = base.model_copy(
                update={
                    "library_mtime_ns": None,
                    "library_size": None,
                    "library_inode": None,
                    "track_count": len(tracks),
                    "snapshot_hash": digest,
                }
            )
            self._saves.changed()
            log.warning(
                "snapshot_meta_rebuilt",
                path=str(self.meta_path),
                reason="missing_or_unusable" if meta is None else "hash_mismatch",
                tracks=len(tracks),
            )
        log.info(
            "snapshot_loaded",
            path=str(self.path),
            tracks=len(tracks),
            verified=verified,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return True

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tracks)

    def __contains__(self, persistent_id: object) -> bool:
        return persistent_id in self.tracks

    def get(self, persistent_id: str) -> Track | None:
        return self.tracks.get(persistent_id)

    def album_tracks(self, artist: str, album: str) -> list[Track]:
        """The tracks of an album in disc and track order, matched on track or album artist.

        Names are compared normalised (see `normalize_name`), as the API cache keys them. A
        track without an album belongs to no album. The first call builds an index, O(tracks);
        later calls cost O(tracks of the album).
        """
        index = self._album_index
        if index is None:
            with paused_gc():
                index = self._album_index = _build_album_index(self.tracks)
        pids = index.get(album_key(artist, album), {})
        return sorted((self.tracks[pid] for pid in pids), key=_album_position)

    @property
    def dirty(self) -> bool:
        """True while some change is not yet written to disk."""
        return self._saves.dirty

    # -- mutating ----------------------------------------------------------------------------

    def put(self, track: Track) -> None:
        """Add or replace a track; a replaced track keeps its position."""
        pid = track.persistent_id
        old = self.tracks.get(pid)
        if old == track:
            return
        self.tracks[pid] = track
        if self._album_index is not None:
            self._reindex(pid, old, track)
        self._tracks_changed()

    def remove(self, persistent_id: str) -> Track | None:
        """Remove a track; returns it, or None if it was not there."""
        old = self.tracks.pop(persistent_id, None)
        if old is not None:
            if self._album_index is not None:
                self._reindex(persistent_id, old, None)
            self._tracks_changed()
        return old

    def replace_all(self, tracks: dict[str, Track]) -> None:
        """Make the snapshot exactly `tracks` (copied; keys must be the persistent ids)."""
        self.tracks = dict(tracks)
        self._album_index = None
        self._tracks_changed()

    def note_scan(
        self,
        stat: FileStat | None,
        library_path: str | Path | None,
        *,
        full: bool,
        seq: int,
        now: float,
    ) -> None:
        """Record that the snapshot now reflects the library file as of `stat`.

        `stat` is the one taken before the read. `full` says the scan was the periodic full
        comparison: only then do `last_full_scan` and `last_force_scan_time` move, so a restart
        never postpones the next one. `seq` is the sequence number of the last event the scan
        produced (or the current one when it produced none).
        """
        meta = self.meta
        meta.library_path = str(library_path) if library_path is not None else None
        meta.library_mtime_ns = stat.mtime_ns if stat is not None else None
        meta.library_size = stat.size if stat is not None else None
        meta.library_inode = stat.inode if stat is not None else None
        meta.last_scan = now
        if full:
            meta.last_full_scan = meta.last_force_scan_time = now
        meta.last_seq = max(meta.last_seq, seq)
        self._saves.changed()

    def add_pending_invalidations(self, keys: Iterable[AlbumKey]) -> None:
        """Persist album keys whose cache invalidation is not yet known to be on disk."""
        pending = self.meta.pending_invalidations
        known = set(pending)
        new = [k for k in dict.fromkeys(keys) if k not in known]
        if new:
            # A new list, never changed in place: a capture may hold the old one.
            self.meta.pending_invalidations = [*pending, *new]
            self._saves.changed()

    def discard_pending_invalidations(self, keys: Iterable[AlbumKey]) -> None:
        """Forget keys whose invalidation has reached the API cache file."""
        drop = set(keys)
        pending = self.meta.pending_invalidations
        kept = [k for k in pending if k not in drop]
        if len(kept) != len(pending):
            self.meta.pending_invalidations = kept
            self._saves.changed()

    def _tracks_changed(self) -> None:
        self._tracks_revision += 1
        self._saves.changed()

    def _reindex(self, pid: str, old: Track | None, new: Track | None) -> None:
        assert self._album_index is not None
        old_keys = old.album_keys() if old is not None else frozenset()
        new_keys = new.album_keys() if new is not None else frozenset()
        for key in old_keys - new_keys:
            pids = self._album_index.get(key)
            if pids is not None:
                pids.pop(pid, None)
                if not pids:
                    del self._album_index[key]
        for key in new_keys - old_keys:
            self._album_index.setdefault(key, {})[pid] = None

    # -- saving ------------------------------------------------------------------------------

    def capture(self) -> SnapshotSave:
        """What to write, taken now: O(n) references, no serialisation. Loop thread only."""
        meta = self.meta.model_copy(update={"track_count": len(self.tracks)})
        return SnapshotSave(
            snapshot_path=self.path,
            meta_path=self.meta_path,
            tracks=list(self.tracks.values()),
            meta=meta,
            revision=self._saves.revision,
            tracks_revision=self._tracks_revision,
            tracker=self._saves,
            on_disk=self._on_disk,
            clock=self._clock,
        )


@dataclass(slots=True)
class _OnDisk:
    """Which tracks snapshot.json holds; read and written only under the SaveTracker lock."""

    tracks_revision: int = -1
    digest: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotSave:
    """One captured state of the snapshot; `write()` runs in a worker thread."""

    snapshot_path: Path
    meta_path: Path
    tracks: list[Track]
    meta: SnapshotMeta
    revision: int
    tracks_revision: int
    tracker: SaveTracker
    on_disk: _OnDisk
    clock: Callable[[], float]

    def write(self) -> bool:
        """Write the files atomically (snapshot.json only if the tracks changed since it was
        last written). False if a newer capture was already written."""
        written = self.tracker.write_if_newer(self.revision, self._write)
        if not written:
            log.debug("snapshot_save_skipped", revision=self.revision)
        return written

    def _write(self) -> None:
        started = time.perf_counter()
        data: bytes | None = None
        digest = self.on_disk.digest
        if digest is None or self.on_disk.tracks_revision != self.tracks_revision:
            data = _dumps_snapshot(self.tracks)
            digest = snapshot_digest(data)
        meta = self.meta.model_copy(update={"snapshot_hash": digest, "saved_at": self.clock()})
        ensure_private_dir(self.snapshot_path.parent)
        # The meta goes first. A crash between the two renames then leaves a meta newer than
        # the snapshot: the hash does not match, so load() keeps the older tracks, drops the
        # library stat (the full reconciliation that follows re-derives every change since)
        # and keeps the newer pending invalidations. In the other order the surviving meta
        # would be the older one, and the pending invalidations of changes already merged into
        # the snapshot (which no rescan would find again) would be lost.
        write_atomic(self.meta_path, orjson.dumps(meta.model_dump()))
        if data is not None:
            write_atomic(self.snapshot_path, data)
            self.on_disk.tracks_revision, self.on_disk.digest = self.tracks_revision, digest
        log.debug(
            "snapshot_saved",
            path=str(self.snapshot_path),
            tracks=len(self.tracks),
            tracks_written=data is not None,
            bytes=len(data) if data is not None else 0,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )


# Past this many loaded objects, walking them again in every full garbage collection costs
# tens of milliseconds each time, in whichever thread triggers it (the event loop waits).
FREEZE_AFTER_LOADING: Final = 10_000


def freeze_if_big(loaded: int) -> None:
    """Move every object alive now out of the cyclic GC's reach, after a big load.

    Tracks and cache entries live until replaced and hold no reference cycles, so reference
    counting frees them either way; frozen, they are no longer traversed by each collection
    (one after the load itself: about 25 ms at 100k tracks; every full one later). Call with
    the collector paused, right after the load.
    """
    if loaded >= FREEZE_AFTER_LOADING:
        gc.freeze()


def _parse_meta(data: Any) -> SnapshotMeta:
    # The model's version has a default for building one in code; a file must say it.
    if type(data) is not dict or data.get("version") != META_VERSION:
        raise ValueError("snapshot meta without a supported version")
    return SnapshotMeta.model_validate(data)


def _album_position(track: Track) -> tuple[int, int]:
    return (track.disc_number or 0, track.track_number or 0)


def _build_album_index(tracks: dict[str, Track]) -> dict[AlbumKey, dict[str, None]]:
    index: dict[AlbumKey, dict[str, None]] = {}
    # The tracks of an album share their names: work out the keys once per distinct names.
    keys_of: dict[tuple[str | None, str | None, str | None], frozenset[AlbumKey]] = {}
    for pid, track in tracks.items():
        names = (track.artist, track.album_artist, track.album)
        keys = keys_of.get(names)
        if keys is None:
            keys = keys_of[names] = track.album_keys()
        for key in keys:
            index.setdefault(key, {})[pid] = None
    return index


def _field_types() -> tuple[tuple[type[Any], ...], ...]:
    hints = get_type_hints(Track)
    return tuple(get_args(hints[name]) or (hints[name],) for name in TRACK_FIELDS)


# The exact JSON types each row position may hold (bool is not an int here).
_ROW_TYPES: Final = _field_types()


def _check_row(row: Any) -> None:
    if type(row) is not list or len(row) != len(_ROW_TYPES):
        raise ValueError(f"track row is not a list of {len(_ROW_TYPES)} values")
    for value, types, name in zip(row, _ROW_TYPES, TRACK_FIELDS, strict=True):
        if type(value) not in types:
            raise TypeError(f"track field {name} has a {type(value).__name__}")
    if not row[0]:
        raise ValueError("track without a persistent id")


def _parse_snapshot(raw: bytes, *, expected_hash: str | None) -> tuple[dict[str, Track], str, bool]:
    """Tracks, the file's hash, and whether the hash matches the meta's.

    Rows of a file whose hash matches are what this code wrote, so only the shape is trusted
    without checking every value; other files are checked value by value.
    """
    # blake2b lets go of the GIL: hash on another core while orjson parses.
    digests: list[str] = []
    hasher = threading.Thread(target=lambda: digests.append(snapshot_digest(raw)))
    hasher.start()
    try:
        data = orjson.loads(raw)
    finally:
        hasher.join()
    digest = digests[0]
    if type(data) is not dict:
        raise TypeError("snapshot is not a JSON object")
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported snapshot version {data.get('version')!r}")
    if data.get("fields") != _FIELDS:
        raise ValueError("snapshot track fields differ from this version's")
    rows = data["tracks"]
    if type(rows) is not list:
        raise TypeError("snapshot tracks is not a list")
    verified = digest == expected_hash
    if not verified:
        for row in rows:
            _check_row(row)
    tracks = _build_tracks(rows)
    return tracks, digest, verified
