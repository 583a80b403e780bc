"""Realistic synthetic Library XML files, written as Music.app writes them.

About 25 keys per track, albums of about 12 tracks, some non-ASCII (and NFD) names, some tracks
without artist or album, names with "&" written as `&#38;`, and a Playlists section with the
master playlist, smart playlists carrying `<data>` blobs and a few ordinary playlists.
Everything is derived from `seed`, so two runs write the same bytes.

    python -m tests.benchmarks.generate 100000 /tmp/Library.xml
"""

from __future__ import annotations

import base64
import random
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ALBUM_SIZE: Final = 12
_HEADER: Final = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple Computer//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
\t<key>Major Version</key><integer>1</integer>
\t<key>Minor Version</key><integer>1</integer>
\t<key>Date</key><date>{date}</date>
\t<key>Application Version</key><string>1.4.6.32</string>
\t<key>Features</key><integer>5</integer>
\t<key>Show Content Ratings</key><true/>
\t<key>Music Folder</key><string>file:///Users/bench/Music/Music/Media.localized/</string>
\t<key>Library Persistent ID</key><string>5E5A1C2B3D4F6789</string>
\t<key>Tracks</key>
\t<dict>
"""
_WORDS: Final = (
    "night blue river light summer heart love city dream fire rain song road home black gold "
    "ghost star electric silver morning shadow ocean wild young dance last first lonely sweet"
).split()
_ODD_NAMES: Final = (
    "Björk",
    "Sigur Rós",
    "Motörhead",
    "坂本龍一",
    "Beyoncé",
    "Mötley Crüe",
    "Ólafur Arnalds",
    "Céline Dion",
    "東京事変",
    "Simon & Garfunkel",
    "\u0425\u043e\u0440 \u0422\u0443\u0440\u0435\u0446\u043a\u043e\u0433\u043e",  # Cyrillic
    "Françoise Hardy",
)
_GENRES: Final = ("Rock", "Pop", "Jazz", "Electronic", "Classical", "Hip-Hop/Rap", "Soundtrack")
_KINDS: Final = ("Apple Music AAC audio file", "MPEG audio file", "Purchased AAC audio file")


def escape(text: str) -> str:
    """Text as Music.app escapes it in a `<string>`."""
    return text.replace("&", "&#38;").replace("<", "&#60;").replace(">", "&#62;")


def _title(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS).capitalize() for _ in range(words))


@dataclass(frozen=True, slots=True)
class Album:
    artist: str | None
    title: str | None
    year: int
    genre: str
    tracks: int


def album_title(index: int) -> str:
    """Every album title is unique, so an edit can find one album's tracks by its bytes."""
    return f"Album {index:06d}"


def _albums(rng: random.Random, n_tracks: int) -> list[Album]:
    albums: list[Album] = []
    total = 0
    while total < n_tracks:
        i = len(albums)
        size = min(max(1, int(rng.gauss(ALBUM_SIZE, 3))), n_tracks - total)
        roll = rng.random()
        artist: str | None
        if roll < 0.05:
            odd = rng.choice(_ODD_NAMES)
            # Half of them NFD, as macOS hands names out.
            artist = unicodedata.normalize("NFD", odd) if rng.random() < 0.5 else odd
        elif roll < 0.07:
            artist = None
        else:
            artist = f"{_title(rng, 2)} {i % 997}"
        title = None if rng.random() < 0.02 else f"{album_title(i)} {_title(rng, 2)}"
        genre = rng.choice(_GENRES)
        albums.append(Album(artist, title, rng.randint(1955, 2025), genre, size))
        total += size
    return albums


def _date(rng: random.Random) -> str:
    return (
        f"20{rng.randint(10, 25):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    )


def _track(rng: random.Random, track_id: int, pid: int, album: Album, number: int) -> str:
    kv: list[tuple[str, str, str]] = [
        ("Track ID", "integer", str(track_id)),
        ("Size", "integer", str(rng.randint(2_000_000, 15_000_000))),
        ("Total Time", "integer", str(rng.randint(90_000, 600_000))),
        ("Disc Number", "integer", "1"),
        ("Disc Count", "integer", "1"),
        ("Track Number", "integer", str(number)),
        ("Track Count", "integer", str(album.tracks)),
        ("Year", "integer", str(album.year)),
        ("Date Modified", "date", _date(rng)),
        ("Date Added", "date", _date(rng)),
        ("Bit Rate", "integer", "256"),
        ("Sample Rate", "integer", "44100"),
        ("Play Count", "integer", str(rng.randint(0, 200))),
        ("Play Date", "integer", str(rng.randint(3_600_000_000, 3_900_000_000))),
        ("Play Date UTC", "date", _date(rng)),
        ("Artwork Count", "integer", "1"),
        ("Persistent ID", "string", f"{pid:016X}"),
        ("Track Type", "string", "File"),
    ]
    name = _title(rng, rng.randint(1, 4))
    if rng.random() < 0.03:
        name = f"{name} & {rng.choice(_ODD_NAMES)}"
    tags = [("Name", "string", escape(name))]
    if album.artist is not None:
        tags += [
            ("Artist", "string", escape(album.artist)),
            ("Album Artist", "string", escape(album.artist)),
        ]
    tags.append(("Composer", "string", escape(_title(rng, 2))))
    if album.title is not None:
        tags.append(("Album", "string", escape(album.title)))
    tags += [("Genre", "string", album.genre), ("Kind", "string", rng.choice(_KINDS))]
    kv[1:1] = tags
    kv.append(
        (
            "Location",
            "string",
            f"file:///Users/bench/Music/Music/Media.localized/Music/{pid:016X}.m4a",
        )
    )
    lines = [f"\t\t<key>{track_id}</key>\n\t\t<dict>\n"]
    lines += [f"\t\t\t<key>{k}</key><{t}>{v}</{t}>\n" for k, t, v in kv]
    lines.append("\t\t</dict>\n")
    return "".join(lines)


def _data_blob(rng: random.Random, size: int) -> str:
    raw = base64.b64encode(rng.randbytes(size)).decode()
    rows = "\n".join(f"\t\t\t{raw[i : i + 72]}" for i in range(0, len(raw), 72))
    return f"\t\t\t<data>\n{rows}\n\t\t\t</data>\n"


def _playlist(name: str, pl_id: int, items: list[int], extra: str = "") -> str:
    head = (
        f"\t\t<dict>\n\t\t\t<key>Name</key><string>{escape(name)}</string>\n"
        f"\t\t\t<key>Description</key><string></string>\n"
        f"\t\t\t<key>Playlist ID</key><integer>{pl_id}</integer>\n"
        f"\t\t\t<key>Playlist Persistent ID</key><string>{pl_id:016X}</string>\n"
        f"\t\t\t<key>All Items</key><true/>\n{extra}"
    )
    if not items:
        return head + "\t\t</dict>\n"
    body = "".join(
        f"\t\t\t\t<dict>\n\t\t\t\t\t<key>Track ID</key><integer>{t}</integer>\n\t\t\t\t</dict>\n"
        for t in items
    )
    items_xml = f"\t\t\t<key>Playlist Items</key>\n\t\t\t<array>\n{body}\t\t\t</array>\n"
    return head + items_xml + "\t\t</dict>\n"


def generate_library(n_tracks: int, *, seed: int = 0, date: str = "2026-01-01T00:00:00Z") -> bytes:
    """The bytes of a library of `n_tracks` tracks."""
    rng = random.Random(seed)
    parts = [_HEADER.format(date=date)]
    track_ids: list[int] = []
    track_id = 1000
    for album in _albums(rng, n_tracks):
        for number in range(1, album.tracks + 1):
            track_id += 2
            track_ids.append(track_id)
            parts.append(_track(rng, track_id, rng.getrandbits(64), album, number))
    parts.append("\t</dict>\n\t<key>Playlists</key>\n\t<array>\n")
    master = "\t\t\t<key>Master</key><true/>\n\t\t\t<key>Visible</key><false/>\n"
    parts.append(_playlist("Library", 64, track_ids, master))
    for i, name in enumerate(("Recently Added", "Top 25 Most Played", "Loved")):
        smart = (
            f"\t\t\t<key>Smart Info</key>\n{_data_blob(rng, 90)}"
            f"\t\t\t<key>Smart Criteria</key>\n{_data_blob(rng, 400)}"
        )
        parts.append(_playlist(name, 100 + i, [], smart))
    for i in range(8):
        picked = rng.sample(track_ids, min(len(track_ids), 500))
        parts.append(_playlist(f"Mix {i} — {_title(rng, 2)}", 200 + i, picked))
    parts.append("\t</array>\n</dict>\n</plist>\n")
    return "".join(parts).encode()


def rename_album(data: bytes, album_index: int, new_title: str) -> tuple[bytes, int]:
    """Rename one album (every `<string>` starting with its unique title); returns the new bytes
    and how many tracks changed."""
    old = f"<key>Album</key><string>{album_title(album_index)}".encode()
    count = data.count(old)
    if not count:
        raise ValueError(f"album {album_index} has no title in this library")
    end = data.index(old) + len(old)
    rest = data.index(b"</string>", end)
    full_old = data[data.index(old) : rest]
    full_new = b"<key>Album</key><string>" + escape(new_title).encode()
    return data.replace(full_old, full_new), count


def move_track(data: bytes, persistent_id: str, suffix: str) -> bytes:
    """Give one track (by persistent id) another album title: its album title plus `suffix`."""
    at = data.index(f"<key>Persistent ID</key><string>{persistent_id}</string>".encode())
    start = data.rindex(b"<dict>", 0, at)
    key = data.index(b"<key>Album</key><string>", start, at)
    end = data.index(b"</string>", key)
    return data[:end] + escape(suffix).encode() + data[end:]


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 100_000
    out = Path(argv[1]) if len(argv) > 1 else Path(f"library-{n}.xml")
    out.write_bytes(generate_library(n))
    print(f"wrote {n} tracks to {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
