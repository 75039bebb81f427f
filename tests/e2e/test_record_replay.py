"""Record a simulated shift from a live stack, replay it at max speed into a fresh stack: same metrics.

The comparison is generic (every measurement, the last value of every field per series), so it covers
whatever the processors compute, not only WIP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_SITE, stack_env, stack_settings
from tests.polling import eventually
from wipwatch.cli import wip_snapshot
from wipwatch.errors import ServiceError
from wipwatch.events import encode_event, topic_for
from wipwatch.influx import InfluxTarget, last_values, query
from wipwatch.ingest import wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.recorder.formats import Message, RecordingWriter, read_recording
from wipwatch.recorder.record import Recorder
from wipwatch.recorder.replay import replay
from wipwatch.services import ChildProcess, NativeStack, Ports, python_module_argv, spawn
from wipwatch.settings import load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

State = dict[str, Any]


@contextmanager
def pipeline(stack: NativeStack, run_dir: Path) -> Iterator[list[ChildProcess]]:
    """ingest + processors as child processes against ``stack``; ingest subscribed before yielding."""
    env = stack_env(stack, run_dir)
    children = [spawn("ingest", python_module_argv("ingest"), run_dir / "logs", env)]
    try:
        wait_subscribed(children[0], run_dir, "wipwatch-ingest-1")
        children.append(spawn("processors", python_module_argv("process"), run_dir / "logs", env))
        yield children
    finally:
        for child in children:
            child.stop()


def settled_state(
    target: InfluxTarget, children: list[ChildProcess], done: Callable[[State], bool], timeout: float
) -> State:
    """Poll the database until ``done`` holds and two polls a second apart agree: the final state."""
    previous: dict[str, State] = {"state": {}}

    def probe() -> State:
        for child in children:
            assert child.alive(), f"{child.name} died: {child.log_tail(30)}"
        return last_values(target)

    def accept(state: State) -> bool:
        stable = state == previous["state"]
        previous["state"] = state
        return stable and done(state)

    logs = "\n".join(f"--- {c.name}\n{c.log_tail(20)}" for c in children)
    try:
        return eventually(probe, accept, timeout=timeout, what="settled metrics")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs}") from None


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
            truth = simulate_site(site, publisher, seed=11, duration=3 * 3600, speed=None, start=start)
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

        def wip_matches_truth(_state: State) -> bool:
            snapshot = wip_snapshot(settings_a)
            return {f"{x['line']}/{x['location']}": x["wip"] for x in snapshot["locations"]} == expected_wip

        original = settled_state(InfluxTarget.from_settings(settings_a), workers_a, wip_matches_truth, 180)
    assert original.get("wip"), f"no wip series in the original run: {sorted(original)}"

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


def test_up_replay_fills_its_own_database_in_a_fresh_stack(tmp_path: Path) -> None:
    """``wipwatch up --replay FILE --database NAME``: no simulator, the replay's metrics land in NAME only."""
    site = load_site(EXAMPLE_SITE)
    recording = tmp_path / "shift-2026-11-25.gz"
    writer = RecordingWriter(recording)
    start = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)

    def sink(event: Any) -> None:
        writer.write(Message(topic_for(event), encode_event(event), 1, False, event.timestamp))

    truth = simulate_site(site, sink, seed=5, duration=2 * 3600, start=start)
    writer.close()
    expected = {
        f"{line.id}/{loc.id}": truth.wip.get(f"{line.id}/{loc.id}", 0) for line, loc in site.iter_locations()
    }

    ports = Ports.free()
    env = {
        "WIPWATCH_SITE_FILE": str(EXAMPLE_SITE),
        "WIPWATCH_MQTT_PORT": str(ports.mqtt),
        "WIPWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka}",
        "WIPWATCH_INFLUX_URL": f"http://127.0.0.1:{ports.influx}",
    }
    run_dir = tmp_path / "run"
    argv = python_module_argv("up", "--run-dir", str(run_dir), "--replay", str(recording))
    up = spawn("up", [*argv, "--database", "shift-1125", "--speed", "max"], tmp_path / "logs", env)
    try:
        settings = load_settings(
            site_file=EXAMPLE_SITE,
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
        eventually(up.log_tail, lambda text: "replay finished" in text, timeout=30, what="replay finished")
        target = InfluxTarget.from_settings(settings)
        databases = {v[0] for s in query(target, "SHOW DATABASES") for v in s.get("values", [])}
        assert "shift-1125" in databases
        assert "wipwatch" not in databases, "the live database must stay untouched"
        assert (run_dir / "replays" / "shift-1125" / "stack").is_dir()
        assert "simulator" not in up.log_tail(60)
    finally:
        up.stop(30)
    assert up.process.returncode == 0, up.log_tail(40)
