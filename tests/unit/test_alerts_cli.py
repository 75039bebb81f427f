"""``wipwatch alerts backtest``: a hand-made recording, the rules of its site file, what would have fired."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from wipwatch.cli.main import app
from wipwatch.events import PartIn, PartOut, StationState, encode_event, topic_for
from wipwatch.recorder.formats import Message, RecordingWriter

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 25, 6, 0, 0, 500_000, tzinfo=UTC)
SITE = {
    "site": "s",
    "alerts": {
        "defaults": False,
        "evaluate_every": 1,
        "rules": [
            {"id": "cap", "condition": "wip_over_cap", "for": 10, "severity": "critical"},
            {"id": "down", "condition": "station_down", "for": 60},
        ],
    },
    "lines": [
        {
            "id": "l",
            "locations": [
                {"id": "q", "kind": "buffer", "cap": 2},
                {"id": "m", "kind": "station", "process_time": {"mean": 10}},
            ],
        }
    ],
}


def recording(path: Path) -> Path:
    def at(second: float) -> datetime:
        return T0 + timedelta(seconds=second)

    events = [
        PartIn(v=1, id="e1", time=at(0), site="s", line="l", location="q", part="p1"),
        PartIn(v=1, id="e2", time=at(1), site="s", line="l", location="q", part="p2"),
        PartIn(v=1, id="e3", time=at(2), site="s", line="l", location="q", part="p3"),
        StationState(v=1, id="e4", time=at(5), site="s", line="l", location="m", state="down"),
        PartOut(v=1, id="e5", time=at(20), site="s", line="l", location="q", part="p1"),
        PartOut(v=1, id="e6", time=at(30), site="s", line="l", location="q", part="p2"),
        StationState(v=1, id="e7", time=at(100), site="s", line="l", location="m", state="working"),
    ]
    writer = RecordingWriter(path, "native")
    for event in events:
        writer.write(Message(topic_for(event), encode_event(event), time=event.timestamp))
    writer.write(Message("wipwatch/s/l/q/in", b"{not json", time=T0.timestamp() + 40))
    writer.close()
    return path


def test_backtest_prints_what_would_have_fired(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(SITE))
    rec = recording(tmp_path / "shift.jsonl.gz")
    argv = ["alerts", "backtest", "--recording", str(rec), "--site", str(site), "--json"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    # ticks at whole seconds: WIP 3 (cap 2) from t=2.5 is first seen at tick 3, fires at 13; WIP 1 at t=30.5
    # resolves at tick 31. m down from t=5.5: tick 6, fires at 66, resolved at the event at 100.5 (tick 101,
    # the end of the recording is evaluated to its last event: tick 100 still sees it down)
    assert [(e["rule"], e["location"], e["fired"], e["resolved"], e["duration_s"]) for e in body] == [
        ("cap", "q", "2026-11-25T06:00:13+00:00", "2026-11-25T06:00:31+00:00", 18.0),
        ("down", "m", "2026-11-25T06:01:06+00:00", None, 34.5),
    ]
    assert "7 events" in result.stderr and "1 messages skipped" in result.stderr
    table = CliRunner().invoke(app, argv[:-1])
    assert table.exit_code == 0
    assert "0:00:18" in table.stdout and "(still firing)" in table.stdout


def test_backtest_of_a_recording_of_another_site(tmp_path: Path) -> None:
    other = {**SITE, "site": "elsewhere"}
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(other))
    rec = recording(tmp_path / "shift.jsonl.gz")
    result = CliRunner().invoke(app, ["alerts", "backtest", "--recording", str(rec), "--site", str(site)])
    assert result.exit_code == 1
    assert "no event of site 'elsewhere'" in str(result.exception)
