"""The expat state machine that turns an XML library plist into `Track`s.

Only the track dicts under the top-level "Tracks" key are materialised, everything else
("Playlists" with its `<data>` blobs and long item arrays, "Music Folder", ...) is parsed for
well-formedness and dropped on the fly. `plistlib` is the reference for how values read; it is
never used because it builds the whole file in memory.

Values of the keys we keep must have the plist type Apple writes ("Year" an `<integer>`, "Date
Added" a `<date>`, ...); a value of another type is treated as absent. Values of other keys are
not converted at all, only checked for structure. Dates are kept as the text written
("2020-05-16T11:33:56Z"), without reinterpretation. Tracks are keyed by the rules of
`daemon.library.identity`.

Security: the file comes from another application, so entity declarations (billion laughs) and
external or undefined entities are refused; the DTD named by the usual `<!DOCTYPE plist PUBLIC
...>` is never fetched. Character references (`&#38;`) and the predefined entities work.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any, BinaryIO, Final, NoReturn
from xml.parsers import expat

from daemon.errors import LibraryReadError, describe_os_error
from daemon.library import LibraryRead, ReadProgress
from daemon.library.identity import TrackKeys, normalize_persistent_id, row_fallback_id
from daemon.models import TRACK_FIELDS, Track

__all__ = ["CHUNK_SIZE", "TRACK_KEYS", "parse_tracks"]

CHUNK_SIZE: Final = 1 << 20

_NFIELDS: Final = len(TRACK_FIELDS)
# Two extra slots after the Track fields hold what the fallback identity needs.
_LOCATION: Final = _NFIELDS
_TOTAL_TIME: Final = _NFIELDS + 1

_F = TRACK_FIELDS.index
# plist key -> (slot in the row, element its value must be written as; "bool" = true/false).
TRACK_KEYS: Final[dict[str, tuple[int, str]]] = {
    "Persistent ID": (_F("persistent_id"), "string"),
    "Name": (_F("name"), "string"),
    "Artist": (_F("artist"), "string"),
    "Album Artist": (_F("album_artist"), "string"),
    "Album": (_F("album"), "string"),
    "Genre": (_F("genre"), "string"),
    "Year": (_F("year"), "integer"),
    "Compilation": (_F("compilation"), "bool"),
    "Disc Number": (_F("disc_number"), "integer"),
    "Track Number": (_F("track_number"), "integer"),
    "Date Added": (_F("date_added"), "date"),
    "Date Modified": (_F("date_modified"), "date"),
    "Kind": (_F("kind"), "string"),
    "Track Type": (_F("track_type"), "string"),
    "Disabled": (_F("disabled"), "bool"),
    "Track ID": (_F("track_id"), "integer"),
    "Location": (_LOCATION, "string"),
    "Total Time": (_TOTAL_TIME, "integer"),
}
_IGNORED: Final = (-1, "")
# Values that repeat across tracks (an album's names, kinds, genres, import dates): one str
# object per distinct value in a read instead of one per track saves about 40 MB at 100k tracks.
_SHARED: Final = frozenset(
    _F(name)
    for name in (
        "artist",
        "album_artist",
        "album",
        "genre",
        "date_added",
        "date_modified",
        "kind",
        "track_type",
    )
)
_ROW_TEMPLATE: Final[list[Any]] = [None] * (_NFIELDS + 2)
_ROW_TEMPLATE[_F("compilation")] = False
_ROW_TEMPLATE[_F("disabled")] = False
del _F

_SCALARS: Final = frozenset({"string", "integer", "real", "date", "data", "true", "false"})
_ELEMENTS: Final = frozenset({"plist", "dict", "array", "key", *_SCALARS})

# Expat errors that only happen when the input stops early.
_TRUNCATED: Final = frozenset(
    expat.errors.codes[message]
    for message in (
        expat.errors.XML_ERROR_NO_ELEMENTS,
        expat.errors.XML_ERROR_UNCLOSED_TOKEN,
        expat.errors.XML_ERROR_PARTIAL_CHAR,
        expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
    )
)
_INVALID_TOKEN: Final = expat.errors.codes[expat.errors.XML_ERROR_INVALID_TOKEN]


SINK_BATCH: Final = 4096  # a streamed read hands its tracks on in batches of this many


def parse_tracks(
    stream: BinaryIO,
    *,
    source: str,
    what: str,
    sink: Callable[[dict[str, Track]], None] | None = None,
    progress: ReadProgress | None = None,
) -> LibraryRead:
    """The tracks of the library plist in `stream`, keyed in file order, with `stat=None`.

    `what` names the input in error messages. With `sink`, the tracks are handed to it in
    batches (by key, in file order; a read that fails may have handed some) and not kept: the
    result's `tracks` is empty, its `track_count` says how many there were. `progress` hears
    of each chunk parsed.

    Raises:
        LibraryReadError: see `daemon.library.xml_reader.parse_library`.
    """
    # One closure per parser state; the parser's handlers are swapped on state changes so the
    # per-element work stays a couple of comparisons. Character data goes straight into a list
    # (a C call) and is joined only at the end of a value we keep.
    parser = expat.ParserCreate(intern={n: n for n in _ELEMENTS})
    parser.buffer_text = True
    parser.buffer_size = 1 << 16
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    buf: list[str] = []
    clear = buf.clear
    join = "".join
    keys_get = TRACK_KEYS.get
    shared = _SHARED  # streamed: within a batch (a first build keeps every track it reads)
    seen: dict[str, str] = {}
    share = seen.setdefault
    template = _ROW_TEMPLATE
    ignored = _IGNORED
    scalars = _SCALARS

    keys = TrackKeys()
    claim = keys.claim
    tracks: dict[str, Track] = {} if sink is not None else keys.tracks  # streamed: a batch
    row: list[Any] = template
    want: tuple[int, str] | None = None  # the kept slot of the pending track key
    track_key_pending = False
    top_key: str | None = None
    doc_state = 0  # 0: before <plist>, 1: in <plist>, 2: after its top-level dict began
    seen_tracks = False
    skip_depth = 0
    resume_start: Any = None
    resume_end: Any = None

    def fail(problem: str) -> NoReturn:
        line, column = parser.CurrentLineNumber, parser.CurrentColumnNumber + 1
        raise LibraryReadError(f"{what} {problem} at line {line}, column {column}")

    def refuse_entity_decl(*_: object) -> NoReturn:
        raise LibraryReadError(f"{what} declares XML entities; refusing to expand them")

    def refuse_external_entity(*_: object) -> NoReturn:
        raise LibraryReadError(f"{what} references an external entity; refusing to load it")

    def refuse_skipped_entity(entity: str, _is_parameter: bool) -> NoReturn:
        fail(f"references the undefined entity &{entity};")

    def set_handlers(start: Any, end: Any) -> None:
        parser.StartElementHandler = start
        parser.EndElementHandler = end

    # -- outside the top-level dict
    def doc_start(name: str, _attrs: object) -> None:
        nonlocal doc_state
        if doc_state == 0:
            if name != "plist":
                fail(f"is not a property list: its root element is <{name}>")
            doc_state = 1
        elif doc_state == 1:
            if name != "dict":
                fail(f"is not a library: its top level is a <{name}> instead of a <dict>")
            doc_state = 2
            set_handlers(top_start, top_end)
        else:
            fail("holds more than one value in <plist>")

    # -- in the top-level dict
    def top_start(name: str, _attrs: object) -> None:
        nonlocal top_key, seen_tracks
        clear()
        if name == "key":
            if top_key is not None:
                fail(f"has no value for the top-level key {top_key!r}")
            return
        if top_key is None:
            fail(f"has a <{name}> without a key in the top-level dict")
        if top_key == "Tracks":
            if name != "dict":
                fail(f"has a <{name}> instead of a <dict> as its Tracks value")
            if seen_tracks:
                fail("has a second Tracks key")
            seen_tracks = True
            top_key = None
            set_handlers(tracks_start, tracks_end)
        elif name == "dict" or name == "array":
            top_key = None
            skip(top_start, top_end)
        elif name not in _SCALARS:
            fail(f"has an unknown element <{name}>")

    def top_end(name: str) -> None:
        nonlocal top_key
        if name == "key":
            top_key = join(buf)
        elif name == "dict":
            if top_key is not None:
                fail(f"has no value for the top-level key {top_key!r}")
            set_handlers(doc_start, None)
        else:
            top_key = None

    # -- in the Tracks dict
    def tracks_start(name: str, _attrs: object) -> None:
        nonlocal row, want
        if name == "key":
            if track_key_pending:
                fail("has a track key without a track")
            return
        if not track_key_pending:
            fail(f"has a <{name}> without a key in Tracks")
        if name != "dict":
            fail(f"has a <{name}> instead of a <dict> as a track")
        row = template.copy()
        want = None
        set_handlers(track_start, track_end)

    def tracks_end(name: str) -> None:
        nonlocal track_key_pending
        if name == "key":
            track_key_pending = True
            return
        # The end of the Tracks dict: track dicts end in track_end.
        if track_key_pending:
            fail("has a track key without a track")
        set_handlers(top_start, top_end)

    # -- in one track dict: the hot path. `want` is None while a key is expected, else the
    # slot of the key just read (`ignored` for keys we drop, whose text is never joined).
    def track_start(name: str, _attrs: object) -> None:
        nonlocal want
        slot = want
        if slot is None:
            if name != "key":
                fail(f"has a <{name}> without a key in a track")
            clear()
            return
        if name == "key":
            fail("has a track key without a value")
        if name == "dict" or name == "array":
            want = None
            skip(track_start, track_end)
        elif slot is not ignored:
            clear()

    def track_end(name: str) -> None:
        nonlocal want, track_key_pending
        slot = want
        if slot is None:
            if name == "key":
                want = keys_get(join(buf), ignored)
                return
            if name != "dict":
                fail(f"has a </{name}> without a key in a track")
            add_track(row)
            track_key_pending = False
            set_handlers(tracks_start, tracks_end)
            return
        want = None
        if slot is ignored:
            if name not in scalars:
                fail(
                    "has a track key without a value"
                    if name == "dict"
                    else f"has an unknown element <{name}>"
                )
            return
        index, kind = slot
        if name == kind:
            if kind == "integer":
                text = join(buf)
                try:
                    row[index] = int(text, 16) if text[:2] in ("0x", "0X") else int(text)
                except ValueError:
                    fail(f"has an invalid integer {text[:40]!r}")
            else:
                text = join(buf)
                row[index] = share(text, text) if index in shared else text
        elif kind == "bool" and (name == "true" or name == "false"):
            row[index] = name == "true"
        elif name == "dict":
            fail("has a track key without a value")
        elif name not in _SCALARS:
            fail(f"has an unknown element <{name}>")

    def add_track(values: list[Any]) -> None:
        nonlocal tracks
        pid = values[0]
        if pid:
            pid = claim(normalize_persistent_id(pid), fallback=False)
            if pid is None:
                return
        else:
            base = row_fallback_id(
                values, location=values[_LOCATION], total_time=values[_TOTAL_TIME]
            )
            pid = claim(base, fallback=True)
        values[0] = pid
        tracks[pid] = Track(*values[:_NFIELDS])
        if sink is not None and len(tracks) >= SINK_BATCH:
            sink(tracks)
            tracks = {}
            seen.clear()  # shared within a batch only: the table of values never outlives it

    # -- inside a value we drop: count nesting, check element names, keep no text
    def skip(start: Any, end: Any) -> None:
        nonlocal skip_depth, resume_start, resume_end
        skip_depth = 1
        resume_start, resume_end = start, end
        set_handlers(skip_start, skip_end)
        parser.CharacterDataHandler = None

    def skip_start(name: str, _attrs: object) -> None:
        nonlocal skip_depth
        if name == "dict" or name == "array":
            skip_depth += 1
        elif name not in _ELEMENTS or name == "plist":
            fail(f"has an unknown element <{name}>")

    def skip_end(name: str) -> None:
        nonlocal skip_depth
        if name == "dict" or name == "array":
            skip_depth -= 1
            if not skip_depth:
                set_handlers(resume_start, resume_end)
                parser.CharacterDataHandler = buf.append

    set_handlers(doc_start, None)
    parser.CharacterDataHandler = buf.append
    parser.EntityDeclHandler = refuse_entity_decl
    parser.ExternalEntityRefHandler = refuse_external_entity
    parser.SkippedEntityHandler = refuse_skipped_entity

    read = stream.read
    feed = parser.Parse
    offset = 0
    try:
        chunk = read(CHUNK_SIZE)
        if not chunk:
            raise LibraryReadError(f"{what} is empty")
        if chunk.startswith(b"bplist"):
            raise LibraryReadError(f"{what} is a binary property list, not XML")
        try:
            while chunk:
                feed(chunk, False)
                offset += len(chunk)
                if progress is not None:
                    progress(bytes_done=offset, tracks_done=len(keys.taken))
                chunk = read(CHUNK_SIZE)
            feed(b"", True)
        except expat.ExpatError as err:
            at = parser.ErrorByteIndex - offset
            bad = chunk[at:] if 0 <= at < len(chunk) else b""
            raise LibraryReadError(_describe_expat_error(what, err, bad)) from None
    except OSError as err:
        raise LibraryReadError(
            f"{what} cannot be read: {describe_os_error(err)}", os_errno=err.errno
        ) from None
    if doc_state < 2:
        raise LibraryReadError(f"{what} is not a library: its plist holds no dict")
    if sink is not None and tracks:
        sink(tracks)
    result = keys.read(source)
    result.track_count = len(keys.taken)
    return result


def _describe_expat_error(what: str, err: expat.ExpatError, rest: bytes) -> str:
    where = f"at line {err.lineno}, column {err.offset + 1}"
    if err.code in _TRUNCATED:
        return f"{what} is not well-formed XML {where} (truncated or half-written?)"
    if err.code == _INVALID_TOKEN and _starts_with_bad_utf8(rest):
        return f"{what} is not valid UTF-8 {where}"
    return f"{what} is not well-formed XML {where}: {expat.ErrorString(err.code)}"


def _starts_with_bad_utf8(data: bytes) -> bool:
    # Expat reports invalid UTF-8 as an "invalid token" at the offending byte.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[:64], final=False)
    except UnicodeDecodeError:
        return True
    return False
