"""Record a simulated shift from a live stack, replay it at max speed into a fresh stack: same metrics;
replay each recording format with the CLI, and `up --replay`: every metric family equals ground truth.

The comparisons are generic (every measurement, the last value of every field per series) and against the
simulator's ground truth family by family (tests/truth_figures.py): WIP, departures, dwell and lead time
with percentiles, station time, holding cost and money tied up, bottleneck shares.
"""

from __future__ import annotations

import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_SITE, stack_settings
from tests.pipeline_rig import last_point_times, pipeline, settled_state
from tests.polling import eventually
from tests.truth_figures import influx_figures, influx_is_truth, mismatches, truth_figures
from wipwatch.errors import ServiceError
from wipwatch.events import Event
from wipwatch.influx import InfluxTarget, query
from wipwatch.mqtt import MqttPublisher
from wipwatch.recorder.formats import WRITE_FORMATS, RecordingWriter, read_recording
from wipwatch.recorder.record import Recorder
from wipwatch.recorder.replay import replay
from wipwatch.services import NativeStack, Ports, free_port, python_module_argv, spawn
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.simulators.truth import GroundTruth
from wipwatch.site import Site, load_site
from wipwatch.views import wip_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

State = dict[str, Any]
MASS_PRODUCTION = REPO_ROOT / "examples" / "mass-production.yaml"
#: A start on a whole second: the probe's case, where the old dry run lost every t=0 event.
WHOLE_SECOND_START = "2026-11-25T06:00:00+00:00"


def assert_every_family_is_truth(
    site: Site, state: State, truth: GroundTruth, start: datetime, events: list[Event]
) -> None:
    """The last values in InfluxDB equal the ground truth, family by family (tests/truth_figures.py)."""
    at = last_point_times(events)
    problems = mismatches(influx_figures(site, state), truth_figures(truth, site, start, at))
    assert problems == [], "\n".join(problems[:30])


def truth_reached(site: Site, truth: GroundTruth, start: datetime, events: list[Event]) -> Any:
    """A ``settled_state`` condition: every metric family in InfluxDB equals the truth."""
    return influx_is_truth(site, truth, start, last_point_times(events))


def test_replay_at_max_into_a_fresh_stack_reproduces_every_metric(stack: NativeStack, tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    run_a = tmp_path / "run-a"
    settings_a = stack_settings(stack, run_a)
    recording = tmp_path / "shift.jsonl.gz"

    # ---- original run: simulator → stack A, recorded from A's broker
    with pipeline(stack, run_a) as workers_a:
        recorder = Recorder(RecordingWriter(recording), settings_a.mqtt_host, settings_a.mqtt_port)
        recorder.start()
        recorder.wait_subscribed()
        recording_thread = threading.Thread(target=recorder.run)
        recording_thread.start()
        try:
            publisher = MqttPublisher(settings_a.mqtt_host, settings_a.mqtt_port, "e2e-sim")
            start = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
            events: list[Event] = []

            def emit(event: Event) -> None:
                events.append(event)
                publisher(event)

            truth = simulate_site(site, emit, seed=11, duration=3 * 3600, speed=None, start=start)
            publisher.close()
            eventually(
                lambda: recorder.received, lambda n: n == truth.events, timeout=60, what="recorded count"
            )
        finally:
            recorder.stop()
            recording_thread.join(30)
            recorder.close()

        expected_wip = {
            f"{line.id}/{loc.id}": truth.wip.get(f"{line.id}/{loc.id}", 0)
            for line, loc in site.iter_locations()
        }
        assert any(expected_wip.values()), "a run that ends with an empty line proves little"

        done = truth_reached(site, truth, start, events)
        original = settled_state(InfluxTarget.from_settings(settings_a), workers_a, done, 180)
    assert original.get("wip"), f"no wip series in the original run: {sorted(original)}"
    assert_every_family_is_truth(site, original, truth, start, events)

    # ---- replay: the file → a fresh stack B, as fast as it takes it
    reader = read_recording(recording)
    stack_b = NativeStack(tmp_path / "stack-b", Ports.free())
    with stack_b.running():
        run_b = tmp_path / "run-b"
        settings_b = stack_settings(stack_b, run_b)
        with pipeline(stack_b, run_b) as workers_b:
            publisher_b = MqttPublisher(settings_b.mqtt_host, settings_b.mqtt_port, "e2e-replay")
            try:
                result = replay(reader, publisher_b.publish, speed=None)
            finally:
                publisher_b.close()
            assert result.skipped == []
            assert result.format == "native"
            assert result.published == truth.events
            replayed = settled_state(
                InfluxTarget.from_settings(settings_b), workers_b, lambda state: state == original, 180
            )
    assert replayed == original


def simulate_dry_run(tmp_path: Path, site_file: Path, fmt: str, seed: int, duration: str) -> tuple[Path, Any]:
    """``wipwatch simulate --dry-run FILE --format FMT`` as a user runs it, and its ground truth made again
    in process (same site, seed and start give the same events), with the events for the point times."""
    recording = tmp_path / f"shift.{fmt}"
    argv = python_module_argv(
        "simulate", "--site", str(site_file), "--seed", str(seed), "--duration", duration
    )
    argv += ["--start", WHOLE_SECOND_START, "--dry-run", str(recording), "--format", fmt]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    events: list[Event] = []
    start = datetime.fromisoformat(WHOLE_SECOND_START)
    seconds = float(duration.removesuffix("h")) * 3600
    truth = simulate_site(load_site(site_file), events.append, seed=seed, duration=seconds, start=start)
    assert f"simulated events={truth.events} " in done.stdout
    return recording, (truth, events, start)


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_replay_cli_of_each_format_gives_the_ground_truth(
    stack: NativeStack, tmp_path: Path, fmt: str
) -> None:
    """`simulate --dry-run --format FMT` then `replay --speed max`: every event counted, every family true.

    The probe's case: mass production, a start on a whole second (1,491 of 12,872 events were dropped).
    """
    site = load_site(MASS_PRODUCTION)
    recording, (truth, events, start) = simulate_dry_run(
        tmp_path, MASS_PRODUCTION, fmt, seed=2, duration="2h"
    )
    run_dir = tmp_path / "run"
    settings = stack_settings(stack, run_dir, site_file=MASS_PRODUCTION)
    with pipeline(stack, run_dir, MASS_PRODUCTION) as workers:
        argv = python_module_argv(
            "replay", str(recording), "--speed", "max", "--mqtt-port", str(stack.mqtt_port)
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"replayed {truth.events} messages ({fmt})" in done.stderr
        assert "0 skipped" in done.stderr
        done = truth_reached(site, truth, start, events)
        state = settled_state(InfluxTarget.from_settings(settings), workers, done, 240)
        assert state.get("data_quality", {}) == {}, "no departure without arrival, nothing late"
    assert_every_family_is_truth(site, state, truth, start, events)


def test_up_replay_fills_its_own_database_in_a_fresh_stack(tmp_path: Path) -> None:
    """``wipwatch up --replay FILE --database NAME``: no simulator, the site taken from the recording (no
    --site, no WIPWATCH_SITE_FILE: the default site would dead-letter every event), the replay's metrics in
    NAME only, every family equal to ground truth, and "replay finished" only once ingest counted them."""
    site = load_site(MASS_PRODUCTION)
    recording, (truth, events, start) = simulate_dry_run(
        tmp_path, MASS_PRODUCTION, "native", seed=5, duration="2h"
    )
    assert truth.events == sum(1 for _ in read_recording(recording))
    expected = {
        f"{line.id}/{loc.id}": truth.wip.get(f"{line.id}/{loc.id}", 0) for line, loc in site.iter_locations()
    }

    ports = Ports.free()
    env = {
        "COLUMNS": "500",  # rich wraps at 80 columns without a terminal
        "WIPWATCH_BOARD_PORT": str(free_port()),  # the default port may be taken on a shared machine
        "WIPWATCH_MQTT_PORT": str(ports.mqtt),
        "WIPWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka}",
        "WIPWATCH_INFLUX_URL": f"http://127.0.0.1:{ports.influx}",
    }
    run_dir = tmp_path / "run"
    argv = python_module_argv("up", "--run-dir", str(run_dir), "--replay", str(recording))
    up = spawn("up", [*argv, "--database", "shift-1125", "--speed", "max"], tmp_path / "logs", env)
    try:
        settings = load_settings(
            site_file=MASS_PRODUCTION,
            run_dir=run_dir,
            influx_url=env["WIPWATCH_INFLUX_URL"],
            influx_db="shift-1125",
        )

        def wip() -> dict[str, int]:
            assert up.alive(), up.log_tail(40)
            try:
                snapshot = wip_snapshot(settings)
            except ServiceError:  # not up yet
                return {}
            return {f"{x['line']}/{x['location']}": x["wip"] for x in snapshot["locations"]}

        eventually(wip, lambda got: got == expected, timeout=180, what=f"replayed WIP {expected}")
        eventually(
            up.log_tail,
            lambda text: f"replay finished: ingest accepted all {truth.events} events" in text,
            timeout=60,
            what="replay finished",
        )
        assert "site from the recording's header" in up.log_tail(200)
        target = InfluxTarget.from_settings(settings)
        state = settled_state(target, [up], truth_reached(site, truth, start, events), 120)
        assert_every_family_is_truth(site, state, truth, start, events)
        databases = {v[0] for s in query(target, "SHOW DATABASES") for v in s.get("values", [])}
        assert "shift-1125" in databases
        assert "wipwatch" not in databases, "the live database must stay untouched"
        assert (run_dir / "replays" / "shift-1125" / "stack").is_dir()
        assert "simulator" not in up.log_tail(60)
    finally:
        up.stop(30)
    assert up.process.returncode == 0, up.log_tail(40)
