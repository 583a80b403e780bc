from __future__ import annotations

from pathlib import Path

import orjson

from daemon.stores.delta import DeltaState

DAY = 86400.0


def test_record_dedupes_in_first_touched_order_and_round_trips(tmp_path: Path) -> None:
    delta = DeltaState(tmp_path)
    assert not delta.load()
    delta.record(["B", "A", "B"], now=100.0)
    delta.record(["C", "A"], now=200.0)
    assert delta.processed_ids == ["B", "A", "C"]
    assert (delta.tracked_since, delta.last_run) == (100.0, 200.0)
    assert delta.dirty
    assert delta.capture().write()
    assert not delta.dirty
    data = orjson.loads((tmp_path / "delta.json").read_bytes())
    assert data == {
        "version": 1,
        "last_run": 200.0,
        "tracked_since": 100.0,
        "processed_ids": ["B", "A", "C"],
    }
    loaded = DeltaState(tmp_path)
    assert loaded.load()
    assert (loaded.processed_ids, loaded.tracked_since, loaded.last_run) == (
        ["B", "A", "C"],
        100.0,
        200.0,
    )


def test_an_empty_record_still_notes_the_run(tmp_path: Path) -> None:
    delta = DeltaState(tmp_path)
    delta.record([], now=5.0)
    assert delta.last_run == 5.0
    assert delta.processed_ids == []


def test_resets_past_max_ids_keeping_the_new_batch(tmp_path: Path) -> None:
    delta = DeltaState(tmp_path, max_ids=4)
    delta.record(["a", "b", "c"], now=1.0)
    delta.record(["d"], now=2.0)
    assert len(delta) == 4
    delta.record(["e", "f"], now=3.0)
    assert delta.processed_ids == ["e", "f"]
    assert delta.tracked_since == 3.0
    delta.record([str(i) for i in range(10)], now=4.0)  # alone past the bound
    assert delta.processed_ids == []
    assert delta.tracked_since == 4.0


def test_default_bound_is_50000_ids(tmp_path: Path) -> None:
    delta = DeltaState(tmp_path)
    delta.record([str(i) for i in range(50_000)], now=1.0)
    assert len(delta) == 50_000
    delta.record(["one more"], now=2.0)
    assert delta.processed_ids == ["one more"]


def test_resets_after_seven_days(tmp_path: Path) -> None:
    delta = DeltaState(tmp_path)
    delta.record(["a"], now=0.0)
    delta.record(["b"], now=7 * DAY)
    assert delta.processed_ids == ["a", "b"]
    delta.record(["c"], now=7 * DAY + 1)
    assert delta.processed_ids == ["c"]
    assert delta.tracked_since == 7 * DAY + 1


def test_corrupt_or_wrong_version_file_is_quarantined(tmp_path: Path) -> None:
    for n, document in enumerate(
        [
            b"nope",
            orjson.dumps({"version": 9}),
            orjson.dumps({"processed_ids": []}),  # no version
            orjson.dumps({"version": 1, "processed_ids": "x"}),
        ]
    ):
        (tmp_path / "delta.json").write_bytes(document)
        delta = DeltaState(tmp_path)
        assert not delta.load()
        assert delta.processed_ids == [] and delta.tracked_since is None
        assert len(list(tmp_path.glob("delta.json.corrupt-*"))) == n + 1
