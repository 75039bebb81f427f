"""`up --replay` takes the site from the recording, and refuses a recording the site file does not describe.

The probe's case: a mass-production recording replayed with the default site file was dead-lettered whole
("unknown site") while `up` said "replay finished".
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wipwatch.cli.stack import _replay_counted, replay_site
from wipwatch.errors import RecordingError
from wipwatch.recorder.formats import Message, RecordingWriter, read_recording, site_header
from wipwatch.recorder.replay import SiteCandidate, site_for_recording, survey
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = pytest.mark.unit

EXAMPLES = REPO_ROOT / "examples"
MASS = EXAMPLES / "mass-production.yaml"
LEAN = EXAMPLES / "lean-line.yaml"
START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def _record(path: Path, site_file: Path, fmt: str, header: bool) -> Path:
    with RecordingWriter(path, fmt, site_header(site_file) if header else None) as writer:
        simulate_site(load_site(site_file), writer, seed=1, duration=1800, start=START)
    return path


@pytest.fixture(scope="module")
def mass_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `simulate --dry-run FILE --format native` writes: the site in the header."""
    return _record(tmp_path_factory.mktemp("rec") / "mass.gz", MASS, "native", header=True)


def test_the_site_embedded_in_the_recording_is_used(
    mass_recording: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIPWATCH_SITE_FILE", raising=False)
    chosen = replay_site(mass_recording, None, LEAN)  # the default site file does not fit
    assert (chosen.source, chosen.site_id) == ("the recording's header", load_site(MASS).site)
    assert chosen.events == sum(1 for _ in read_recording(mass_recording))
    assert load_site(chosen.materialise(tmp_path)) == load_site(MASS)


def test_without_a_header_the_examples_site_that_fits_is_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIPWATCH_SITE_FILE", raising=False)
    recording = _record(tmp_path / "multi.jsonl", EXAMPLES / "multi-line-site.yaml", "jsonl", header=False)
    chosen = replay_site(recording, None, LEAN)
    assert chosen.path == EXAMPLES / "multi-line-site.yaml"


def test_two_example_sites_that_fit_equally_are_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lean-pull and mass-production share site, line and location ids but differ (costs, release rule)
    monkeypatch.delenv("WIPWATCH_SITE_FILE", raising=False)
    recording = _record(tmp_path / "mass.csv", MASS, "csv", header=False)
    with pytest.raises(RecordingError, match=r"fit 2 different site files equally.*pass --site"):
        replay_site(recording, None, LEAN)


def test_a_chosen_site_file_that_does_not_describe_the_recording_is_refused(mass_recording: Path) -> None:
    contents = survey(read_recording(mass_recording))
    mass_id = load_site(MASS).site
    lean = SiteCandidate(str(LEAN), load_site(LEAN))
    with pytest.raises(RecordingError, match=f"site '{mass_id}'.*knows only 0 of {contents.events}"):
        site_for_recording(mass_recording, contents, [lean])
    mass = SiteCandidate(str(MASS), load_site(MASS))
    assert site_for_recording(mass_recording, contents, [mass]) is mass


def test_most_events_must_be_known(tmp_path: Path) -> None:
    lean = load_site(LEAN)
    line, loc = lean.lines[0].id, lean.lines[0].locations[0].id
    path = tmp_path / "mixed.jsonl"
    with RecordingWriter(path, "jsonl") as writer:
        for i in range(10):
            site_id = lean.site if i < 5 else "elsewhere"
            writer.write(Message(f"wipwatch/{site_id}/{line}/{loc}/in", b"{}", 1, False, 1.0e9 + i))
        writer.write(Message("wipwatch/alerts/x/y/z", b"{}", 1, False, 1.0e9 + 11))
        writer.write(Message("other/topic", b"{}", 1, False, 1.0e9 + 12))
    contents = survey(read_recording(path))
    assert (contents.events, contents.other) == (10, 2)
    with pytest.raises(RecordingError, match="5 of 10"):
        site_for_recording(path, contents, [SiteCandidate(str(LEAN), lean)])


def test_up_refuses_a_wrong_site_in_one_line_before_starting_anything(
    mass_recording: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIPWATCH_")}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "wipwatch", "up", "--run-dir", str(tmp_path / "run")),
            *("--site", str(LEAN), "--replay", str(mass_recording)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "COLUMNS": "500"},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("wipwatch: error: ") and "pass --site" in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists(), "nothing may start for a refused replay"


def test_a_replay_is_reported_finished_only_when_ingest_accepted_every_event() -> None:
    now = 1000.0
    assert _replay_counted({"accepted": 10, "rejected": 0}, 10, now) == (
        "replay finished: ingest accepted all 10 events"
    )
    verdict = _replay_counted({"accepted": 8, "rejected": 2, "reasons": {"unknown site": 2}}, 10, now)
    assert verdict is not None and verdict.startswith("replay incomplete: ingest accepted 8 and rejected 2")
    assert "unknown site: 2" in verdict
    assert _replay_counted(None, 10, float("inf")) is None, "still counting"
    assert (_replay_counted(None, 10, -1e9) or "").startswith("replay incomplete"), "counting gave up"
