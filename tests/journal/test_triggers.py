"""Triggers without a daemon: their config, what a look past the cursor finds on a real
database file, the backoff, the trim's keep rule and one run's bounded output."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.config import Config, TriggerConfig, config_from_mapping, load_config
from daemon.errors import ConfigError
from daemon.events import ObserverEvent, TrackAdded, TrackModified, TrackRemoved
from daemon.journal import triggers
from daemon.journal.hub import EventHub
from daemon.journal.recorder import Recorder
from daemon.journal.signal import Signal
from daemon.journal.trigger_process import MAX_LINE_CHARS, MAX_OUTPUT_LINES, run_command
from daemon.models import Track
from daemon.service.housekeeping import Housekeeping
from daemon.stores import journal
from daemon.stores.database import Database, open_database
from daemon.stores.writer import Writer

AnyEvent = TrackAdded | TrackModified | TrackRemoved | ObserverEvent


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path)
    yield database
    database.close()


def spec(**values: Any) -> TriggerConfig:
    return TriggerConfig.model_validate({"name": "t", "command": ["/bin/true"], **values})


def record(db: Database, events: list[AnyEvent], at: float | None = None) -> None:
    with db.transaction() as tx:
        journal.append(tx, events, time.time() if at is None else at)


def set_cursor(db: Database, name: str, seq: int, at: float | None = None) -> None:
    with db.transaction() as tx:
        journal.set_cursor(tx, name, seq, time.time() if at is None else at)


def modified(pid: str, **changes: Any) -> TrackModified:
    old = Track(pid, name="n", genre="g", year=1999)
    return TrackModified(old, dataclasses.replace(old, **changes), tuple(changes))


def look(db: Database, trigger: TriggerConfig) -> triggers.Look:
    with db.reading() as conn:
        return triggers.look(conn, trigger, db.epoch)


# -- config


def test_a_trigger_table_takes_the_documented_keys_and_defaults() -> None:
    cfg = config_from_mapping({"triggers": [{"name": "genre-updater", "command": ["/x", "-a"]}]})
    [t] = cfg.triggers
    assert t.types == ("track_added", "track_modified", "track_removed")
    assert t.fields is None and t.excluded_origins == {"genre-updater"}
    assert (t.settle_seconds, t.min_interval_seconds, t.timeout_seconds) == (5, 60, 600)


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ({"name": "Genre Updater", "command": ["/x"]}, "triggers.0.name"),
        ({"name": "t", "command": []}, "non-empty list"),
        ({"name": "t", "command": "/x --a"}, "triggers.0.command"),
        ({"name": "t", "command": ["/x"], "types": ["scan_started"]}, "triggers.0.types"),
        ({"name": "t", "command": ["/x"], "fields": ["genre", "mood"]}, "unknown field 'mood'"),
        ({"name": "t", "command": ["/x"], "timeout_seconds": 0}, "timeout_seconds"),
        ({"name": "t", "command": ["/x"], "shell": True}, "unknown key 'triggers.0.shell'"),
    ],
)
def test_a_bad_trigger_is_a_one_line_error_naming_the_key(table: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"triggers": [table]})
    assert said in str(err.value) and "\n" not in str(err.value)


def test_trigger_names_are_unique() -> None:
    table = {"name": "t", "command": ["/x"]}
    with pytest.raises(ConfigError, match="'t' is used twice"):
        config_from_mapping({"triggers": [table, table]})


def test_triggers_of_a_file_others_may_write_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[triggers]]\nname = "t"\ncommand = ["/x"]\n')
    path.chmod(0o600)
    assert [t.name for t in load_config(path).triggers] == ["t"]
    path.chmod(0o620)
    refused = load_config(path)
    assert refused.triggers == () and refused.triggers_refused is not None
    assert "chmod go-w" in refused.triggers_refused


# -- what a look finds


def test_a_look_finds_the_matching_events_and_where_the_cursor_may_go(db: Database) -> None:
    trigger = spec(fields=["genre"], types=["track_modified", "track_removed"])
    record(db, [TrackAdded(Track("P0"))])
    set_cursor(db, "trigger.t", 1)
    record(
        db,
        [
            TrackAdded(Track("P1")),  # not one of its types
            modified("P2", genre="Jazz"),
            modified("P3", name="other"),  # not one of its fields
            ObserverEvent("scan_finished"),
            TrackRemoved(Track("P4")),
            modified("P5", year=2001),
        ],
    )
    found = look(db, trigger)
    assert [e["seq"] for e in found.events] == [3, 6]
    assert found.cursor == 1 and found.upto == 6 and not found.resync
    assert all(e["cursor"] == f"{db.epoch}.{e['seq']}" for e in found.events)


def test_events_of_an_excluded_origin_do_not_match() -> None:
    trigger = spec()
    assert not triggers.matches(trigger, {"type": "track_added", "origin": "t"})
    assert triggers.matches(trigger, {"type": "track_added", "origin": None})
    # An event recorded without the key is a person's, like null.
    assert triggers.matches(trigger, {"type": "track_added"})
    assert triggers.matches(spec(exclude_origins=[]), {"type": "track_added", "origin": "t"})


def test_nothing_matching_lets_the_cursor_go_to_the_head(db: Database) -> None:
    set_cursor(db, "trigger.t", 0)
    record(db, [modified("P1", name="x"), ObserverEvent("scan_finished")])
    found = look(db, spec(fields=["genre"]))
    assert found.events == [] and found.upto == 2


def test_a_big_backlog_is_delivered_in_batches(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triggers, "MAX_EVENTS", 3)
    monkeypatch.setattr(triggers, "_PAGE", 2)
    set_cursor(db, "trigger.t", 0)
    record(db, [TrackAdded(Track(f"P{i}")) for i in range(7)])
    first = look(db, spec())
    assert [e["seq"] for e in first.events] == [1, 2, 3] and first.upto == 3
    set_cursor(db, "trigger.t", first.upto)
    assert [e["seq"] for e in look(db, spec()).events] == [4, 5, 6]


def test_a_cursor_older_than_the_trimmed_journal_is_a_resync(db: Database) -> None:
    set_cursor(db, "trigger.t", 0)
    record(db, [TrackAdded(Track(f"P{i}")) for i in range(5)])
    with db.transaction() as tx:
        journal.trim(tx, keep_after=5, before_at=0, max_events=2)
    found = look(db, spec())
    assert found.resync and found.events == [] and found.upto == 5


def test_the_backoff_starts_at_10_s_and_doubles_to_an_hour() -> None:
    assert [triggers.backoff_seconds(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert triggers.backoff_seconds(9) == 2560 and triggers.backoff_seconds(10) == 3600
    assert triggers.backoff_seconds(1000) == 3600


# -- the trim


async def test_the_trim_keeps_what_a_configured_trigger_has_not_committed(db: Database) -> None:
    old = time.time() - 90 * 86400
    record(db, [TrackAdded(Track(f"P{i}")) for i in range(10)], at=old)
    # Both committed long ago; only the configured trigger still holds the journal.
    set_cursor(db, "trigger.t", 3, at=old)
    set_cursor(db, "trigger.gone", 1, at=old)
    config = Config(triggers=(spec(),))
    writer = Writer(db)
    recorder = Recorder(writer, EventHub(10), Signal(), journal.head(db.read_conn))
    housekeeping = Housekeeping(config, db, writer, recorder, Signal())
    with db.transaction() as tx:
        housekeeping._maintenance(tx)
    assert journal.oldest(db.read_conn) == 4


# -- one run


async def test_a_runs_output_is_logged_within_its_bound(tmp_path: Path) -> None:
    script = "import sys\nfor i in range(300): print(i)\nprint('x' * 5000, file=sys.stderr)\n"
    with tempfile.TemporaryFile() as stdin, capture_logs() as logs:
        outcome = await run_command(
            "t", [sys.executable, "-c", script], {"PATH": os.defpath}, stdin, 30
        )
    assert outcome.succeeded and outcome.dropped_lines == 301 - MAX_OUTPUT_LINES
    lines = [e for e in logs if e["event"] == "trigger_output"]
    assert len(lines) == MAX_OUTPUT_LINES
    # Each stream in its order (Python writes a piped stdout at exit, so stderr may come first).
    assert [e["line"] for e in lines if e["stream"] == "stdout"][:2] == ["0", "1"]
    [long] = [e["line"] for e in lines if e["stream"] == "stderr"]
    assert long == "x" * MAX_LINE_CHARS + "..."


async def test_a_command_that_cannot_start_is_a_failed_run() -> None:
    with tempfile.TemporaryFile() as stdin:
        outcome = await run_command("t", ["/nonexistent/cmd"], {}, stdin, 30)
    assert not outcome.succeeded and outcome.error is not None
