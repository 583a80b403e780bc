// A stand-in for JXA's `Application("Music")`, just wide enough for musicd's script.
//
// It mimics the scripting dictionary's bulk accessors: `tracks.name()` answers an array with
// one value per track, dates come back as Date objects, missing values as null. Every call
// that would be an Apple Event on a Mac is written to `events`, so a test can prove the
// script never sends one event per track. Asking a track specifier for one element
// (`tracks[0]`, `tracks.at(0)`, `tracks.byId(...)`) throws: that is the per-track loop the
// script must not have.
//
// A library spec (JSON) looks like:
//   {"running": true,
//    "tracks": [{"persistentID": "...", "name": "...", "dateAdded": "2020-...Z" | null |
//                {"invalid": true}, "class": "fileTrack", ...}],
//    "fail": {"name": {"number": -1743, "message": "Not authorized ..."}},
//    "classUnsupported": false,
//    "changeAfterEvents": 3, "tracksAfterChange": [...]}
'use strict';

const PROPERTIES = [
  'persistentID', 'name', 'artist', 'albumArtist', 'album', 'genre', 'year', 'compilation',
  'discNumber', 'trackNumber', 'dateAdded', 'modificationDate', 'kind', 'class', 'enabled',
  'id', 'databaseID',
];
const DATE_PROPERTIES = new Set(['dateAdded', 'modificationDate']);
// What Music.app answers for a property a track does not have a value for.
const DEFAULTS = {
  name: '', artist: '', albumArtist: '', album: '', genre: '', kind: '', year: 0,
  discNumber: 0, trackNumber: 0, compilation: false, enabled: true, class: 'fileTrack',
  dateAdded: null, modificationDate: null, id: 0, databaseID: 0,
};

function appleEventError(spec) {
  const err = new Error(spec.message);
  err.errorNumber = spec.number;
  return err;
}

function toValue(property, value) {
  if (value === undefined) value = DEFAULTS[property];
  if (value === undefined) return null;
  if (DATE_PROPERTIES.has(property) && value !== null) {
    if (typeof value === 'object' && value.invalid) return new Date(NaN);
    return new Date(value);
  }
  return value;
}

function makeMusic(spec) {
  const events = [];
  let current = spec.tracks || [];
  let sent = 0;

  function send(event) {
    events.push(event);
    sent += 1;
    if (spec.changeAfterEvents !== undefined && sent === spec.changeAfterEvents) {
      current = spec.tracksAfterChange;
    }
  }

  function matches(track, test) {
    if (Array.isArray(test._or)) return test._or.some((t) => matches(track, t));
    return Object.keys(test).every((key) => {
      if (key.startsWith('_')) throw new Error(`fake whose() does not know ${key}`);
      return track[key] === test[key];
    });
  }

  function specifier(select, label) {
    const target = {
      whose(test) {
        // Building a filtered specifier sends nothing; each property fetch evaluates it.
        return specifier(() => select().filter((t) => matches(t, test)), `${label}.whose`);
      },
      at() {
        throw new Error('per-track access');
      },
      byId() {
        throw new Error('per-track access');
      },
      byName() {
        throw new Error('per-track access');
      },
    };
    for (const property of PROPERTIES) {
      target[property] = function () {
        send({ get: property, of: label });
        if (spec.fail && spec.fail[property]) throw appleEventError(spec.fail[property]);
        if (property === 'class' && spec.classUnsupported) {
          throw appleEventError({ number: -1708, message: 'Music got an error' });
        }
        return select().map((t) => toValue(property, t[property]));
      };
    }
    return new Proxy(target, {
      get(obj, key) {
        if (key === 'length') {
          send({ count: label });
          if (spec.fail && spec.fail.count) throw appleEventError(spec.fail.count);
          return select().length;
        }
        if (typeof key === 'string' && /^[0-9]+$/.test(key)) {
          throw new Error(`per-track access: ${label}[${key}]`);
        }
        return obj[key];
      },
    });
  }

  const app = {
    running() {
      // Not an Apple Event on a Mac: JXA asks the process table.
      events.push({ running: spec.running !== false });
      return spec.running !== false;
    },
    libraryPlaylists: [{ tracks: specifier(() => current, 'tracks') }],
    launched: false,
    activate() {
      app.launched = true;
    },
    launch() {
      app.launched = true;
    },
  };
  return { app, events };
}

module.exports = { makeMusic };
