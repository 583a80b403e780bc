// musicd: read the library's tracks from Music.app.
//
// Run as `osascript -l JavaScript music_library.js [mode [persistent ids...]]`. JXA calls
// run(argv); osascript prints its return value, which is one line of JSON, ASCII only (every
// non-ASCII character is a \u escape), so the output survives any locale osascript runs under.
//
// Modes:
//   full            every kept field of every library track
//   probe           persistent id, date modified, disabled, kind, track type, name, artist,
//                   album artist and album only: what the daemon compares with its cache to
//                   find the tracks that changed
//   fetch ID...     every kept field of the tracks with these persistent ids only
//
// Each field is fetched for all tracks at once, one Apple Event per field
// (`tracks.name()` returns an array): Music.app answers one event for 100k tracks far faster
// than 100k events. The arrays are zipped into rows here, in plain JavaScript.
//
// The answer is {"format", "running", "mode", "count", "fields", "consistent", "tracks",
// "warnings"}; "tracks" holds one row per track with the values in "fields" order. When
// Music.app is not running the answer is {"format", "running": false}: the script never
// launches Music.app. An Apple Event error is answered as {"format", "running": true,
// "error": {"number", "message"}} rather than thrown, so the caller gets its number.
//
// Values, matching what the XML reader reads from Library.xml (where Music.app leaves a key
// out, this script says null):
//   - text: the empty string is null; lone UTF-16 surrogates become U+FFFD (JSON must be
//     valid Unicode); otherwise strings are passed through untouched (NFD stays NFD);
//   - year, disc number, track number: 0 (Music.app's "not set") is null;
//   - dates: ISO 8601 UTC to the second ("2020-05-16T11:33:56Z"), missing ones null;
//   - disabled is `not enabled`; compilation is true only when Music.app says true;
//   - persistent ids are upper-cased (16 hex digits);
//   - track type comes from the track's class: file track "File", URL track "URL",
//     shared (cloud) track "Remote", anything else null.
//
// Consistency: the library can change between two Apple Events, and zipping arrays fetched
// before and after an insertion would pair one track's id with another's name. So the
// persistent ids are fetched first and again last: if the two lists differ, or any array
// has another length, the answer says "consistent": false and carries no tracks. The date
// modified is fetched second, before the other fields, so an edit that lands halfway through
// a read leaves an older date in the answer and is fetched again by the next probe.

'use strict';

var FORMAT = 'musicd/music-app/1';

// daemon.models.TRACK_FIELDS, in that order.
var TRACK_FIELDS = [
  'persistent_id', 'name', 'artist', 'album_artist', 'album', 'genre', 'year',
  'compilation', 'disc_number', 'track_number', 'date_added', 'date_modified', 'kind',
  'track_type', 'disabled', 'track_id', 'music_id', 'database_id'
];
var PROBE_FIELDS = [
  'persistent_id', 'date_modified', 'disabled', 'kind', 'track_type', 'name', 'artist',
  'album_artist', 'album'
];

// Apple Event errors after which nothing else can work: give up on the whole read.
var FATAL_ERRORS = [-600, -609, -1712, -1743, -1744];

function text(value) {
  if (typeof value !== 'string' || value.length === 0) return null;
  return wellFormed(value);
}

function upperId(value) {
  if (typeof value !== 'string' || value.length === 0) return null;
  return wellFormed(value).toUpperCase();
}

function positiveInt(value) {
  return typeof value === 'number' && value > 0 && value % 1 === 0 ? value : null;
}

function isTrue(value) {
  return value === true;
}

function isFalse(value) {
  return value === false;
}

function isoDate(value) {
  // Duck-typed: a Date from another realm (the test harness) is still a date.
  if (value === null || typeof value !== 'object' || typeof value.getTime !== 'function') {
    return null;
  }
  var ms = value.getTime();
  if (typeof ms !== 'number' || ms !== ms) return null;
  var iso = new Date(Math.floor(ms / 1000) * 1000).toISOString();
  return iso.slice(0, -5) + 'Z';
}

var TRACK_TYPES = { filetrack: 'File', urltrack: 'URL', sharedtrack: 'Remote' };

function trackType(value) {
  if (typeof value !== 'string') return null;
  var type = TRACK_TYPES[value.toLowerCase()];
  return type === undefined ? null : type;
}

// field -> [Music.app property, conversion]
var SOURCES = {
  persistent_id: ['persistentID', upperId],
  name: ['name', text],
  artist: ['artist', text],
  album_artist: ['albumArtist', text],
  album: ['album', text],
  genre: ['genre', text],
  year: ['year', positiveInt],
  compilation: ['compilation', isTrue],
  disc_number: ['discNumber', positiveInt],
  track_number: ['trackNumber', positiveInt],
  date_added: ['dateAdded', isoDate],
  date_modified: ['modificationDate', isoDate],
  kind: ['kind', text],
  track_type: ['class', trackType],
  disabled: ['enabled', isFalse],
  // The library XML's Track ID: Music.app's scripting has no such property.
  track_id: [null, null],
  music_id: ['id', positiveInt],
  database_id: ['databaseID', positiveInt]
};

// Replace unpaired UTF-16 surrogates, which JSON text cannot carry as characters.
function wellFormed(s) {
  if (!/[\ud800-\udfff]/.test(s)) return s;
  var out = '';
  for (var i = 0; i < s.length; i++) {
    var c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      var d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out += s.charAt(i) + s.charAt(i + 1);
        i++;
        continue;
      }
    }
    out += c >= 0xd800 && c <= 0xdfff ? '\ufffd' : s.charAt(i);
  }
  return out;
}

function errorNumber(err) {
  var n = err && err.errorNumber;
  return typeof n === 'number' ? n : null;
}

function errorMessage(err) {
  if (err && typeof err.message === 'string') return err.message;
  return String(err);
}

// One Apple Event: the property `field` of every track the specifier names.
function fetchColumn(tracks, field, warnings) {
  var source = SOURCES[field];
  var values;
  if (source[0] === null) return null;
  if (field === 'track_type') {
    // Only a label: when this Music.app cannot list classes in bulk, go on without it.
    try {
      values = tracks[source[0]]();
    } catch (err) {
      if (FATAL_ERRORS.indexOf(errorNumber(err)) >= 0) throw err;
      values = null;
    }
    if (!Array.isArray(values)) {
      warnings.push('Music.app did not list the track classes; track_type is left empty');
      return null;
    }
  } else {
    values = tracks[source[0]]();
    if (!Array.isArray(values)) {
      throw new Error('Music.app answered ' + source[0] + '() with ' + typeof values +
                      ', not a list');
    }
  }
  var convert = source[1];
  var out = new Array(values.length);
  for (var i = 0; i < values.length; i++) out[i] = convert(values[i]);
  return out;
}

function sameIds(a, b) {
  if (a.length !== b.length) return false;
  for (var i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return false;
  }
  return true;
}

// The tracks of the library playlist whose persistent id is one of `ids`: one specifier, so
// each field is still a single Apple Event.
function tracksWithIds(tracks, ids) {
  if (ids.length === 1) return tracks.whose({ persistentID: ids[0] });
  var tests = new Array(ids.length);
  for (var i = 0; i < ids.length; i++) tests[i] = { persistentID: ids[i] };
  return tracks.whose({ _or: tests });
}

/**
 * Read the library from `app` (an `Application("Music")`). Returns the answer object.
 * `mode` is "full", "probe" or "fetch"; `ids` the persistent ids for "fetch".
 */
function collect(app, mode, ids) {
  if (!app.running()) return { format: FORMAT, running: false };
  var fields;
  if (mode === 'full' || mode === 'fetch') fields = TRACK_FIELDS;
  else if (mode === 'probe') fields = PROBE_FIELDS;
  else throw new Error('unknown mode ' + JSON.stringify(mode));
  if (mode === 'fetch' && (!ids || ids.length === 0)) {
    throw new Error('fetch needs at least one persistent id');
  }

  var library = app.libraryPlaylists[0].tracks;
  var count = library.length;
  var tracks = mode === 'fetch' ? tracksWithIds(library, ids) : library;
  var warnings = [];
  var columns = {};
  var order = ['persistent_id', 'date_modified'];
  for (var f = 0; f < fields.length; f++) {
    if (order.indexOf(fields[f]) < 0) order.push(fields[f]);
  }
  for (var o = 0; o < order.length; o++) {
    columns[order[o]] = fetchColumn(tracks, order[o], warnings);
  }
  var idsAfter = fetchColumn(tracks, 'persistent_id', warnings);

  var n = columns.persistent_id.length;
  var consistent = sameIds(columns.persistent_id, idsAfter);
  for (var c = 0; c < fields.length && consistent; c++) {
    var column = columns[fields[c]];
    if (column !== null && column.length !== n) consistent = false;
  }
  var answer = {
    format: FORMAT,
    running: true,
    mode: mode,
    count: count,
    fields: fields,
    consistent: consistent,
    tracks: [],
    warnings: warnings
  };
  if (!consistent) return answer;

  var rows = new Array(n);
  var width = fields.length;
  for (var i = 0; i < n; i++) {
    var row = new Array(width);
    for (var j = 0; j < width; j++) {
      var col = columns[fields[j]];
      row[j] = col === null ? null : col[i];
    }
    rows[i] = row;
  }
  answer.tracks = rows;
  return answer;
}

// JSON with every non-ASCII UTF-16 unit escaped: valid JSON, and plain ASCII on stdout.
function asciiJson(value) {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, function (ch) {
    return '\\u' + ('0000' + ch.charCodeAt(0).toString(16)).slice(-4);
  });
}

function run(argv) {
  var args = argv || [];
  var mode = args.length > 0 ? args[0] : 'full';
  var answer;
  try {
    answer = collect(Application('Music'), mode, args.slice(1));
  } catch (err) {
    answer = {
      format: FORMAT,
      running: true,
      error: { number: errorNumber(err), message: wellFormed(errorMessage(err)) }
    };
  }
  return asciiJson(answer);
}
