"""A shift replayed at `max` and paced writes the same InfluxDB series, point for point (real servers).

docs/metrics.md, "When points are written": the probe saw a `max` replay of an 8-hour shift write 3 points
per location, none before hour 5.8. Here a 1-hour mass-production shift (start on a whole second, so
events fall exactly on period ends) goes through mosquitto, ingest, Kafka and the processors twice, into
fresh stacks: as fast as the broker takes it, and at 240x. Every point of every series must agree, the
series must have a point for every minute of the shift, and the last values must equal ground truth.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.pipeline_rig import Points, all_points, last_point_times, pipeline, settled_state
from tests.truth_figures import influx_figures, influx_is_truth, mismatches, truth_figures
from wipwatch.events import Event
from wipwatch.influx import InfluxTarget
from wipwatch.mqtt import MqttPublisher
from wipwatch.recorder.formats import RecordingWriter, read_recording
from wipwatch.recorder.replay import replay
from wipwatch.services import NativeStack, Ports
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.truth import GroundTruth
from wipwatch.site import Site, load_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE_FILE = REPO_ROOT / "examples" / "mass-production.yaml"
START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def replayed_points(
    tmp_path: Path,
    name: str,
    recording: Path,
    speed: float | None,
    site: Site,
    truth: GroundTruth,
    events: list[Event],
) -> Points:
    stack = NativeStack(tmp_path / f"stack-{name}", Ports.free())
    with stack.running():
        run_dir = tmp_path / f"run-{name}"
        settings = load_settings(
            run_dir=run_dir, mqtt_port=stack.mqtt_port, influx_url=stack.influx_url, site_file=SITE_FILE
        )
        with pipeline(stack, run_dir, SITE_FILE) as workers:
            publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, f"replay-{name}")
            try:
                result = replay(read_recording(recording), publisher.publish, speed=speed)
            finally:
                publisher.close()
            assert result.skipped == [] and result.published == truth.events
            target = InfluxTarget.from_settings(settings)

            done = influx_is_truth(site, truth, START, last_point_times(events))
            settled_state(target, workers, done, 240)
            return all_points(target)


def test_max_and_paced_replays_write_identical_series(tmp_path: Path) -> None:
    site = load_site(SITE_FILE)
    recording = tmp_path / "shift.gz"
    events: list[Event] = []
    with RecordingWriter(recording, "native") as writer:

        def sink(event: Event) -> None:
            events.append(event)
            writer(event)

        truth = simulate_site(site, sink, seed=3, duration=3600, start=START)
    assert any(e.time.microsecond == 0 for e in events), "whole-second events are the probe's case"

    at_max = replayed_points(tmp_path, "max", recording, None, site, truth, events)
    paced = replayed_points(tmp_path, "paced", recording, 240.0, site, truth, events)

    assert at_max.keys() == paced.keys(), sorted(at_max.keys() ^ paced.keys())[:10]
    differing = [key for key in at_max if at_max[key] != paced[key]]
    assert differing == [], [(k, at_max[k], paced[k]) for k in differing[:5]]

    # a point for every minute with events, not only the batches' ends
    wip_minutes = {t for (m, tags, t) in at_max if m == "wip" and dict(tags)["location"] == "press"}
    assert len(wip_minutes) >= 55, sorted(wip_minutes)

    # and the last values are the ground truth, every metric family
    state = {m: dict(series) for m, series in _last(at_max).items()}
    at = last_point_times(events)
    problems = mismatches(influx_figures(site, state), truth_figures(truth, site, START, at))
    assert problems == [], "\n".join(problems[:20])


def _last(points: Points) -> dict[str, dict[tuple[tuple[str, str], ...], dict]]:
    """What ``last_values`` returns, from a full point set: each field's value at its series' last point."""
    out: dict[str, dict[tuple[tuple[str, str], ...], dict]] = {}
    for (measurement, tags, _t), fields in sorted(points.items(), key=lambda item: item[0][2]):
        out.setdefault(measurement, {}).setdefault(tags, {}).update(fields)
    return out
