"""Fakes at process boundaries: a fake `osascript` on PATH, steered by a control file."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from daemon.models import Track

FAKES = Path(__file__).resolve().parent
FAKE_BIN = FAKES / "bin"


@dataclass
class FakeOsascript:
    """Writes the control file of tests/fakes/fake_osascript.py and reads back its calls."""

    dir: Path

    @property
    def control(self) -> Path:
        return self.dir / "osascript.json"

    @property
    def calls_file(self) -> Path:
        return self.dir / "osascript-calls.jsonl"

    def env(self, path: str | None = None) -> dict[str, str]:
        """What a process needs in its environment to find and steer the fake."""
        return {
            "PATH": f"{FAKE_BIN}{os.pathsep}{path if path is not None else os.environ['PATH']}",
            "MUSICD_FAKE_OSASCRIPT": str(self.control),
            "MUSICD_FAKE_PYTHON": sys.executable,
        }

    def configure(self, **control: Any) -> None:
        """Replace the control file atomically: a running daemon never reads half of it."""
        control.setdefault("calls", str(self.calls_file))
        tmp = self.control.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(control))
        os.replace(tmp, self.control)

    def serve(self, tracks: list[Track], **library: Any) -> None:
        """Answer like musicd's script for a library holding `tracks`."""
        self.configure(library={"tracks": [t.to_row() for t in tracks], **library})

    def calls(self) -> list[list[str]]:
        """The arguments (after the script) of every call so far."""
        if not self.calls_file.exists():
            return []
        return [orjson.loads(line) for line in self.calls_file.read_bytes().splitlines()]

    def modes(self) -> list[str]:
        return [call[0] if call else "full" for call in self.calls()]

    def clear_calls(self) -> None:
        self.calls_file.unlink(missing_ok=True)
