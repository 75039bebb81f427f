"""The record/replay command-line pieces that need no broker: time bounds and the replay stack's place."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from wipwatch.cli.options import parse_time_point
from wipwatch.cli.stack import replay_stack
from wipwatch.recorder.replay import TimePoint

pytestmark = pytest.mark.unit


def test_time_points() -> None:
    assert parse_time_point("2h30m") == TimePoint(9000.0, relative=True)
    assert parse_time_point("90") == TimePoint(90.0, relative=True)
    assert parse_time_point("2026-11-25T06:00:00+00:00") == TimePoint(1795586400.0)
    for bad in ("2026-11-25T06:00:00", "noon", "2026-13-45T00:00:00+00:00"):
        with pytest.raises(typer.BadParameter):
            parse_time_point(bad)


def test_replay_stack_is_fresh_and_named_after_the_file(tmp_path: Path) -> None:
    recording = tmp_path / "shift 2026-11-25.jsonl.gz"
    recording.write_bytes(b"")
    run, database = replay_stack(tmp_path / "run", recording, None)
    assert database == "replay-shift-2026-11-25"
    assert run == tmp_path / "run" / "replays" / "replay-shift-2026-11-25"
    (run / "stack").mkdir(parents=True)
    (run / "stack" / "old").write_text("left from the last replay")
    again, _ = replay_stack(tmp_path / "run", recording, None)
    assert again == run
    assert not run.exists(), "a replay starts from an empty stack"


@pytest.mark.parametrize("name", ["../live", "a/b", "", "x" * 65, ".hidden"])
def test_replay_stack_rejects_unsafe_database_names(tmp_path: Path, name: str) -> None:
    recording = tmp_path / "r.gz"
    recording.write_bytes(b"")
    with pytest.raises(typer.BadParameter):
        replay_stack(tmp_path, recording, name)
