"""Library files for the tests and the benchmarks: read, edit and write them as Music.app does,
and synthetic libraries of any size rendered to Apple plist XML."""

from __future__ import annotations

import os
import plistlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from daemon.models import TRACK_FIELDS

# The documented plist key -> Track field mapping, written out here independently of the
# readers, so that a test comparing with it checks them rather than repeats them.
PLIST_KEYS = {
    "Persistent ID": "persistent_id",
    "Name": "name",
    "Artist": "artist",
    "Album Artist": "album_artist",
    "Album": "album",
    "Genre": "genre",
    "Year": "year",
    "Compilation": "compilation",
    "Disc Number": "disc_number",
    "Track Number": "track_number",
    "Date Added": "date_added",
    "Date Modified": "date_modified",
    "Kind": "kind",
    "Track Type": "track_type",
    "Disabled": "disabled",
    "Track ID": "track_id",
}


def sample_library_bytes() -> bytes:
    return (resources.files("daemon") / "data" / "sample_library.xml").read_bytes()


def write_library(path: Path, data: bytes, *, by_rename: bool = True) -> None:
    """Write the library as Music.app does (temp file + rename), or in place."""
    if by_rename:
        tmp = path.with_name(f".{path.name}.saving-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:
        with path.open("r+b" if path.exists() else "wb") as fh:
            fh.write(data)
            fh.truncate()


def load_plist(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        data: dict[str, Any] = plistlib.load(fh)
    return data


def save_plist(path: Path, data: dict[str, Any], *, by_rename: bool = False) -> None:
    """Write a library file in place, or as editors and Music.app do: temp file + rename."""
    write_library(path, plistlib.dumps(data, sort_keys=False), by_rename=by_rename)


def edit_tracks(
    path: Path, edit: Callable[[dict[str, dict[str, Any]]], None], *, by_rename: bool = False
) -> None:
    data = load_plist(path)
    edit(data["Tracks"])
    save_plist(path, data, by_rename=by_rename)


def find_track(tracks: dict[str, dict[str, Any]], **match: Any) -> dict[str, Any]:
    for track in tracks.values():
        if all(track.get(k) == v for k, v in match.items()):
            return track
    raise KeyError(match)


def set_track_keys(path: Path, name: str, **keys: Any) -> None:
    """Set plist keys (`Album="..."`) of the track called `name`, writing the file in place."""

    def edit(tracks: dict[str, dict[str, Any]]) -> None:
        find_track(tracks, Name=name).update(keys)

    edit_tracks(path, edit)


# -- synthetic libraries -------------------------------------------------------------------


@dataclass
class SynthLibrary:
    """An in-memory library that renders to Apple plist XML the way Music.app writes it.

    Albums hold `per_album` tracks; album `a` is by "Artist {a % 97}" and is called
    "Album {a:05d}". Tracks are dicts keyed by their plist key names.
    """

    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def generate(cls, n_tracks: int, per_album: int = 10) -> SynthLibrary:
        lib = cls()
        for i in range(n_tracks):
            a = i // per_album
            pid = f"{0xA000000000000000 + i:016X}"
            lib.tracks[pid] = {
                "Track ID": 1000 + i,
                "Persistent ID": pid,
                "Name": f"Track {i:06d}",
                "Artist": artist_of(a),
                "Album Artist": artist_of(a),
                "Album": album_of(a),
                "Genre": "Jazz" if a % 3 else "Électronique",
                "Year": 1950 + a % 70,
                "Track Number": i % per_album + 1,
                "Disc Number": 1,
                "Total Time": 200_000 + i,
                "Date Added": "2023-03-01T12:01:00Z",
                "Date Modified": "2023-03-03T12:01:00Z",
                "Kind": "AAC audio file",
                "Track Type": "File",
                "Location": f"file:///Users/me/Music/{a:05d}/{i:06d}.m4a",
            }
        return lib

    def album_pids(self, artist: str, album: str) -> list[str]:
        return [
            pid
            for pid, t in self.tracks.items()
            if t.get("Artist") == artist and t.get("Album") == album
        ]

    def copy(self) -> SynthLibrary:
        return SynthLibrary({pid: dict(t) for pid, t in self.tracks.items()})

    def render(self, *, without_pid: set[str] | None = None) -> bytes:
        return render_plist(self.tracks.values(), without_pid=without_pid or set())

    def expected_rows(self) -> dict[str, dict[str, Any]]:
        """What the daemon's tracks table should hold for this library (`db_tracks` rows)."""
        return {pid: expected_track(t) for pid, t in self.tracks.items()}


def artist_of(a: int) -> str:
    return f"Artist {a % 97:02d}"


def album_of(a: int) -> str:
    return f"Album {a:05d}"


def expected_track(t: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TRACK_FIELDS)
    row["compilation"] = False
    row["disabled"] = False
    for key, name in PLIST_KEYS.items():
        if key in t:
            row[name] = t[key]
    return row


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "<true/>" if value else "<false/>"
    if isinstance(value, int):
        return f"<integer>{value}</integer>"
    if isinstance(value, str) and value.endswith("Z") and value[:4].isdigit() and "T" in value:
        return f"<date>{value}</date>"
    return f"<string>{escape(str(value))}</string>"


def render_plist(
    tracks: Iterable[dict[str, Any]], *, without_pid: Collection[str] = (), extra: str = ""
) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
        '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        f'<plist version="1.0">\n{extra}<dict>\n'
        "\t<key>Major Version</key><integer>1</integer>\n"
        "\t<key>Application Version</key><string>1.4.6.32</string>\n"
        "\t<key>Tracks</key>\n\t<dict>\n"
    ]
    ids = []
    for t in tracks:
        ids.append(t["Track ID"])
        parts.append(f"\t\t<key>{t['Track ID']}</key>\n\t\t<dict>\n")
        for key, value in t.items():
            if key == "Persistent ID" and value in without_pid:
                continue
            parts.append(f"\t\t\t<key>{escape(key)}</key>{_value(value)}\n")
        parts.append("\t\t</dict>\n")
    parts.append("\t</dict>\n\t<key>Playlists</key>\n\t<array>\n\t\t<dict>\n")
    parts.append("\t\t\t<key>Name</key><string>Library</string>\n")
    parts.append("\t\t\t<key>Playlist Items</key>\n\t\t\t<array>\n")
    parts.extend(
        f"\t\t\t\t<dict><key>Track ID</key><integer>{i}</integer></dict>\n" for i in ids[:2000]
    )
    parts.append("\t\t\t</array>\n\t\t</dict>\n\t</array>\n</dict>\n</plist>\n")
    return "".join(parts).encode("utf-8")
