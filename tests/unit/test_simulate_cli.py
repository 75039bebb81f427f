"""`wipwatch simulate --dry-run`: events as a recording (jsonl by default), ground truth, summary, errors."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wipwatch.cli.main import app
from wipwatch.errors import SiteFileError
from wipwatch.events import PartIn, PartOut, validate_message
from wipwatch.recorder.formats import read_recording
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).parents[2] / "examples"
START = "2026-11-25T06:00:00+00:00"


def test_dry_run_writes_valid_events_and_matching_ground_truth(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    site_file = EXAMPLES / "lean-pull.yaml"
    args = ["simulate", "--site", str(site_file), "--duration", "1h", "--seed", "4", "--start", START]
    result = CliRunner().invoke(app, [*args, "--dry-run", str(events_file)])
    assert result.exit_code == 0, result.output
    assert "brackets" in result.output and "kanban" in result.output
    site = load_site(site_file)
    wip: dict[str, int] = {}
    lines = events_file.read_text().splitlines()
    for text in lines:
        record = json.loads(text)
        assert record["qos"] == 1
        event = validate_message(record["topic"], record["payload"].encode(), site)
        key = f"{event.line}/{event.location}"
        if isinstance(event, PartIn | PartOut):
            wip[key] = wip.get(key, 0) + (1 if isinstance(event, PartIn) else -1)
            assert wip[key] >= 0, f"departure before arrival at {key}"
    truth = json.loads((tmp_path / "events.truth.json").read_text())
    assert truth["events"] == len(lines)
    # the start is a whole second: every t=0 event has a time without fractional seconds, and the
    # replay reader (the same format definition) must read each one back, stamped with its event time
    reader = read_recording(events_file)
    messages = list(reader)
    assert reader.skipped == []
    assert reader.format == "jsonl"
    assert len(messages) == len(lines)
    first = validate_message(messages[0].topic, messages[0].payload, site)
    assert first.time == datetime.fromisoformat(START)
    assert all(m.time == validate_message(m.topic, m.payload, site).timestamp for m in messages)
    assert {k: v for k, v in wip.items() if v} == {k: v for k, v in truth["wip"].items() if v}
    assert truth["duration_s"] == 3600


def _unboxed(output: str) -> str:
    """Typer's error text without rich's box and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def test_unknown_scenario_and_missing_duration_are_clear_errors(tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    site_file = str(EXAMPLES / "multi-line-site.yaml")
    result = CliRunner().invoke(
        app,
        ["simulate", "--site", site_file, "--scenario", "nope", "--duration", "1h", "--dry-run", str(out)],
    )
    assert isinstance(result.exception, SiteFileError)
    assert "scenarios.nope: no such scenario (known: all-push, jit-assembly)" in str(result.exception)
    result = CliRunner().invoke(app, ["simulate", "--site", site_file, "--dry-run", str(out)])
    assert result.exit_code == 2
    assert "--dry-run needs --duration" in result.output
    result = CliRunner().invoke(app, ["simulate", "--site", site_file, "--format", "csv", "--duration", "1h"])
    assert result.exit_code == 2
    assert "give --dry-run FILE too" in _unboxed(result.output)
    args = ["simulate", "--site", site_file, "--duration", "1h", "--dry-run", str(out), "--format", "xml"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--format must be one of native, csv, jsonl" in _unboxed(result.output)


def test_scenario_option_switches_every_line_to_push(tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    site_file = str(EXAMPLES / "multi-line-site.yaml")
    args = [
        "simulate",
        "--site",
        site_file,
        "--scenario",
        "all-push",
        "--duration",
        "30m",
        "--dry-run",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("push") >= 3 and "kanban" not in result.output


def test_push_holds_far_more_wip_and_lead_time_than_pull_at_equal_throughput() -> None:
    """The shipped scenarios over one 8-hour shift (docs/simulators.md has the table)."""
    summary = {}
    for name in ("mass-production", "lean-pull"):
        truth = simulate_site(load_site(EXAMPLES / f"{name}.yaml"), lambda e: None, seed=1, duration=8 * 3600)
        summary[name] = truth.line_summary("brackets")
    push, pull = summary["mass-production"], summary["lean-pull"]
    assert push["orders"] == pull["orders"], "both scenarios see the same customer orders"
    assert push["throughput_per_hour"] == pytest.approx(pull["throughput_per_hour"], rel=0.05)
    assert push["avg_wip"] > 3 * pull["avg_wip"]
    assert push["mean_lead_time_s"] > 3 * pull["mean_lead_time_s"]
