"""A fake `osascript` for tests: behaves as the control file named by $MUSICD_FAKE_OSASCRIPT says.

Run through `tests/fakes/bin/osascript`. Only `osascript -l JavaScript <music_library.js>
[args...]` is accepted, as the reader calls it. The control file (JSON) is read on every call,
so a test can change it between reads. Keys:

- "behaviour":
  - "library" (default): answer like musicd's script would, from "library" (below), in every
    mode (full, probe, fetch ID...): a Python stand-in for the script's protocol;
  - "node": run the real script under Node.js with a fake Music.app built from "music"
    (tests/library/jxa/run_jxa.js);
  - "stdout": print "stdout" verbatim, "stderr" to stderr, exit with "exit" (default 0);
  - "hang": start a grandchild `sleep` that holds stdout (its pid goes to "pidfile"), then
    sleep too: only killing the whole process group frees the reader.
- "library": {"tracks": [rows in TRACK_FIELDS order], "running": true, "count": N (default:
  the number of tracks), "consistent": true, "warnings": [], "error": {"number", "message"},
  "vanish": [ids a fetch does not find]}.
- "by_mode": {"probe" | "full" | "fetch": {keys that override the above for that mode}}.
- "calls": a file to which each call's arguments after the script are appended (JSON lines).
- "wait_for": a file; the call waits (up to 60 s) until it exists, then behaves as above: a
  slow Music.app whose read a test finishes when it wants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FORMAT = "musicd/music-app/1"
TRACK_FIELDS = [
    "persistent_id", "name", "artist", "album_artist", "album", "genre", "year", "compilation",
    "disc_number", "track_number", "date_added", "date_modified", "kind", "track_type",
    "disabled", "track_id", "music_id", "database_id",
]  # fmt: skip
PROBE_FIELDS = [
    "persistent_id", "date_modified", "disabled", "kind", "track_type", "name", "artist",
    "album_artist", "album",
]  # fmt: skip
JXA_RUNNER = Path(__file__).resolve().parents[1] / "library" / "jxa" / "run_jxa.js"


def answer(library: dict[str, Any], args: list[str]) -> dict[str, Any]:
    mode = args[0] if args else "full"
    if not library.get("running", True):
        return {"format": FORMAT, "running": False}
    if library.get("error"):
        return {"format": FORMAT, "running": True, "error": library["error"]}
    # A row may stop before the ids Music.app numbers tracks by: they are null then.
    width = len(TRACK_FIELDS)
    rows: list[list[Any]] = [[*r, *[None] * (width - len(r))] for r in library.get("tracks", [])]
    count = library.get("count", len(rows))
    fields = TRACK_FIELDS
    if mode == "probe":
        fields = PROBE_FIELDS
        index = [TRACK_FIELDS.index(f) for f in PROBE_FIELDS]
        rows = [[row[i] for i in index] for row in rows]
    elif mode == "fetch":
        wanted = set(args[1:]) - set(library.get("vanish", []))
        rows = [row for row in rows if row[0] in wanted]
    consistent = library.get("consistent", True)
    return {
        "format": FORMAT,
        "running": True,
        "mode": mode,
        "count": count,
        "fields": fields,
        "consistent": consistent,
        "tracks": rows if consistent else [],
        "warnings": library.get("warnings", []),
    }


def main() -> int:
    argv = sys.argv[1:]
    if len(argv) < 3 or argv[:2] != ["-l", "JavaScript"]:
        sys.stderr.write(f"osascript: fake accepts only -l JavaScript SCRIPT, got {argv}\n")
        return 1
    script, args = Path(argv[2]), argv[3:]
    if script.name != "music_library.js" or not script.is_file():
        sys.stderr.write(f"osascript: {script}: No such file or directory\n")
        return 1
    control_path = Path(os.environ["MUSICD_FAKE_OSASCRIPT"])
    control: dict[str, Any] = json.loads(control_path.read_text(encoding="utf-8"))
    mode = args[0] if args else "full"
    control.update(control.get("by_mode", {}).get(mode, {}))
    if control.get("calls"):
        with open(control["calls"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(args) + "\n")

    if control.get("wait_for"):
        deadline = time.monotonic() + 60
        while not Path(control["wait_for"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    behaviour = control.get("behaviour", "library")
    if behaviour == "library":
        sys.stdout.write(json.dumps(answer(control["library"], args)) + "\n")
        return 0
    if behaviour == "node":
        spec = control_path.with_suffix(".music.json")
        spec.write_text(json.dumps(control["music"]), encoding="utf-8")
        return subprocess.call(["node", str(JXA_RUNNER), str(script), str(spec), "--", *args])
    if behaviour == "stdout":
        sys.stdout.write(control.get("stdout", ""))
        sys.stderr.write(control.get("stderr", ""))
        return int(control.get("exit", 0))
    if behaviour == "hang":
        child = subprocess.Popen(["sleep", "300"])
        if control.get("pidfile"):
            Path(control["pidfile"]).write_text(str(child.pid), encoding="utf-8")
        time.sleep(300)
        return 0
    sys.stderr.write(f"fake osascript: unknown behaviour {behaviour!r}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
