"""Replay throughput of an 8-hour, 3-line shift (33 locations), end to end into the processors.

Figures, all in one run on fresh native servers:
- ``read_rate``: reading and decoding the recording file alone (baseline 1);
- ``publish_rate``: replay at ``max`` into mosquitto with nothing subscribed (baseline 2, the ceiling of
  replaying through one MQTT connection);
- ``record_rate``: the same replay with ``Recorder`` subscribed, until the last message is written
  (and ``record_lost``: messages the recorder missed, which must be 0);
- ``end_to_end_rate``: replay at ``max`` with ingest and processors running, from the replay's start until
  InfluxDB shows the final WIP of every location equal to the simulator's ground truth.

Run: ``.venv/bin/python bench/replay.py [--hours 8]``. Writes bench/results/replay.json too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from wipwatch.events import Event, encode_event, topic_for
from wipwatch.ingest import wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.recorder.formats import Message, RecordingWriter, read_recording
from wipwatch.recorder.record import Recorder
from wipwatch.recorder.replay import replay
from wipwatch.services import NativeStack, Ports, python_module_argv, spawn
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site
from wipwatch.views import wip_snapshot

SITE_FILE = REPO_ROOT / "bench" / "sites" / "three-lines.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "replay.json"
GOAL_SECONDS = 120.0


def build_shift(path: Path, hours: float) -> tuple[int, dict[str, int]]:
    """Simulate the shift straight into a native recording, received at event time (as if recorded live)."""
    site = load_site(SITE_FILE)
    writer = RecordingWriter(path)

    def sink(event: Event) -> None:
        writer.write(Message(topic_for(event), encode_event(event), 1, False, event.timestamp))

    truth = simulate_site(
        site, sink, seed=3, duration=hours * 3600, start=datetime(2026, 11, 25, 6, tzinfo=UTC)
    )
    writer.close()
    wip = {
        f"{line.id}/{loc.id}": truth.wip.get(f"{line.id}/{loc.id}", 0) for line, loc in site.iter_locations()
    }
    return truth.events, wip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="give up end to end after this long")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="wipwatch-bench-replay-") as tmp:
        work = Path(tmp)
        recording = work / "shift.gz"
        n, expected_wip = build_shift(recording, args.hours)
        figures["messages"] = n
        figures["file_mb"] = recording.stat().st_size / 1e6

        began = time.perf_counter()
        read = sum(1 for _ in read_recording(recording))
        figures["read_rate"] = read / (time.perf_counter() - began)

        stack = NativeStack(work / "stack", Ports.free())
        with stack.running():
            publisher = MqttPublisher("127.0.0.1", stack.mqtt_port, "bench-raw")
            began = time.perf_counter()
            replay(read_recording(recording), publisher.publish, None)
            publisher.drain()
            figures["publish_rate"] = n / (time.perf_counter() - began)
            publisher.close()

            recorder = Recorder(RecordingWriter(work / "again.gz"), "127.0.0.1", stack.mqtt_port)
            recorder.start()
            recorder.wait_subscribed()
            thread = threading.Thread(target=recorder.run)
            thread.start()
            publisher = MqttPublisher("127.0.0.1", stack.mqtt_port, "bench-record")
            began = time.perf_counter()
            replay(read_recording(recording), publisher.publish, None)
            publisher.close()
            deadline = time.perf_counter() + 60
            while recorder.received < n and time.perf_counter() < deadline:
                time.sleep(0.01)
            figures["record_rate"] = recorder.received / (time.perf_counter() - began)
            recorder.stop()
            thread.join()
            recorder.close()
            figures["record_lost"] = n - sum(1 for _ in read_recording(work / "again.gz"))

            run = work / "run"
            env = {
                "WIPWATCH_SITE_FILE": str(SITE_FILE),
                "WIPWATCH_RUN_DIR": str(run),
                "WIPWATCH_MQTT_PORT": str(stack.mqtt_port),
                "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
                "WIPWATCH_INFLUX_URL": stack.influx_url,
                "WIPWATCH_LOG_LEVEL": "WARNING",
            }
            settings = load_settings(
                site_file=SITE_FILE,
                run_dir=run,
                mqtt_port=stack.mqtt_port,
                kafka_bootstrap=stack.kafka_bootstrap,
                influx_url=stack.influx_url,
            )
            ingest = spawn("ingest", python_module_argv("ingest"), run / "logs", env)
            children = [ingest]
            try:
                wait_subscribed(ingest, run, settings.ingest_client_id)
                children.append(spawn("processors", python_module_argv("process"), run / "logs", env))
                publisher = MqttPublisher("127.0.0.1", stack.mqtt_port, "bench-replay")
                began = time.perf_counter()
                replay(read_recording(recording), publisher.publish, None)
                publisher.close()
                figures["replay_publish_seconds"] = time.perf_counter() - began
                deadline = began + args.timeout
                while True:
                    snapshot = wip_snapshot(settings)
                    got = {f"{x['line']}/{x['location']}": x["wip"] for x in snapshot["locations"]}
                    if got == expected_wip:
                        break
                    dead = [c.name for c in children if not c.alive()]
                    if dead or time.perf_counter() > deadline:
                        sys.exit(f"end to end did not finish (dead: {dead}); logs in {run / 'logs'}")
                    time.sleep(0.2)
                figures["end_to_end_seconds"] = time.perf_counter() - began
                figures["end_to_end_rate"] = n / figures["end_to_end_seconds"]
            finally:
                for child in children:
                    child.stop()

    print(f"messages: {n} messages ({args.hours:g} h, 3 lines, 33 locations)")
    print(f"file_size: {figures['file_mb']:.2f} MB (gzip JSON lines)")
    print(f"read_rate: {figures['read_rate']:.0f} msg/s (baseline 1)")
    print(f"publish_rate: {figures['publish_rate']:.0f} msg/s (baseline 2, nothing consuming)")
    print(
        f"record_rate: {figures['record_rate']:.0f} msg/s, "
        f"ratio {figures['record_rate'] / figures['publish_rate']:.2f}"
        f" of publish_rate; record_lost: {figures['record_lost']:.0f} messages"
    )
    e2e = figures["end_to_end_rate"]
    print(
        f"end_to_end_rate: {e2e:.0f} msg/s, ratio {e2e / figures['publish_rate']:.2f} of publish_rate, "
        f"{e2e / figures['read_rate']:.3f} of read_rate"
    )
    seconds = figures["end_to_end_seconds"]
    verdict = "meets" if seconds < GOAL_SECONDS else "misses"
    print(f"end_to_end_seconds: {seconds:.1f} s ({verdict} the {GOAL_SECONDS:.0f} s goal)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "replay", "hours": args.hours, **figures}, indent=1) + "\n")


if __name__ == "__main__":
    main()
