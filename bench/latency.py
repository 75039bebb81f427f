"""Live latency: publish at a steady rate with event time = now, measure until the WIP point is in InfluxDB.

A fresh native stack (mosquitto, Apache Kafka, influxd) with ``wipwatch ingest`` and ``wipwatch process``
as children. The events are a simulated shift of the 3-line site, published in order at ``--rate`` events/s
with their time set to the wall clock at publishing. A WIP point's time is its line's event-time clock (the
last event applied), so when a poll at wall time ``w`` sees a line's newest point at ``t``, every event of
that line with a time in (previous ``t``, ``t``] became visible by ``w``: its latency is ``w - time``
(at most ``--poll`` late). Figures:
- ``publish_to_influx_p50/p99/max``: seconds from publishing to the point visible in InfluxDB;
- the baseline in the same run: ``lateness + idle_release`` settings, and the floor an event cannot beat
  (the lateness: an event is applied once the line's watermark is ``lateness`` past it);
- ``publish_lag_p99``: how late the publisher itself ran behind its schedule.

Run: ``.venv/bin/python bench/latency.py [--rate 1000] [--seconds 60] [--lateness 5] [--idle-release 2]``.
Writes bench/results/latency.json too.
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from wipwatch.events import Event, encode_event, topic_for
from wipwatch.influx import InfluxTarget, query, rows
from wipwatch.ingest import wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import ChildProcess, NativeStack, Ports, python_module_argv, spawn
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

SITE_FILE = REPO_ROOT / "bench" / "sites" / "three-lines.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "latency.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to publish")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds left out of the figures")
    parser.add_argument("--lateness", type=float, default=None, help="WIPWATCH_PROCESSOR_LATENESS_S")
    parser.add_argument("--idle-release", type=float, default=None, help="WIPWATCH_PROCESSOR_IDLE_RELEASE_S")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between InfluxDB polls")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    site = load_site(SITE_FILE)
    events: list[Event] = []
    hours = args.rate * args.seconds / 11_000 + 1  # the 3-line site makes about 11,800 events an hour
    simulate_site(
        site, events.append, seed=8, duration=hours * 3600, start=datetime(2026, 11, 25, tzinfo=UTC)
    )
    events = events[: int(args.rate * args.seconds)]
    overrides = {"processor_lateness_s": args.lateness, "processor_idle_release_s": args.idle_release}
    with tempfile.TemporaryDirectory(prefix="wipwatch-bench-latency-") as tmp:
        work = Path(tmp)
        stack = NativeStack(work / "stack", Ports.free())
        run = work / "run"
        settings = load_settings(
            site_file=SITE_FILE,
            run_dir=run,
            mqtt_port=stack.mqtt_port,
            kafka_bootstrap=stack.kafka_bootstrap,
            influx_url=stack.influx_url,
            **overrides,
        )
        env = {
            "WIPWATCH_SITE_FILE": str(SITE_FILE),
            "WIPWATCH_RUN_DIR": str(run),
            "WIPWATCH_MQTT_PORT": str(stack.mqtt_port),
            "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "WIPWATCH_INFLUX_URL": stack.influx_url,
            "WIPWATCH_LOG_LEVEL": "WARNING",
            "WIPWATCH_PROCESSOR_LATENESS_S": str(settings.processor_lateness_s),
            "WIPWATCH_PROCESSOR_IDLE_RELEASE_S": str(settings.processor_idle_release_s),
        }
        with stack.running():
            target = InfluxTarget.from_settings(settings)
            children: list[ChildProcess] = []
            try:
                children.append(spawn("ingest", python_module_argv("ingest"), run / "logs", env))
                wait_subscribed(children[0], run, settings.ingest_client_id)
                children.append(spawn("processors", python_module_argv("process"), run / "logs", env))
                # the processors join their consumer group within a few seconds; warm-up covers it
                publisher = MqttPublisher("127.0.0.1", stack.mqtt_port, "bench-latency")
                sent: dict[str, list[float]] = defaultdict(list)  # line -> publish times, ascending
                visible: dict[str, float] = defaultdict(float)  # line -> newest WIP point time seen
                latencies: list[float] = []
                lags: list[float] = []
                done = {line.id: 0 for line in site.lines}  # events per line already given a latency
                began = time.time()
                stop = threading.Event()

                def poller() -> None:
                    # its own thread: a query takes milliseconds, one event's whole budget at 1,000/s
                    while not stop.wait(args.poll):
                        poll(target, site.site, sent, visible, done, latencies, began + args.warmup)

                watcher = threading.Thread(target=poller, daemon=True)
                watcher.start()
                for i, event in enumerate(events):
                    due = began + i / args.rate
                    now = time.time()
                    if due > now:
                        time.sleep(due - now)
                    now = time.time()
                    lags.append(now - due)
                    stamped = msgspec.structs.replace(event, time=datetime.fromtimestamp(now, UTC))
                    publisher.publish(topic_for(stamped), encode_event(stamped))
                    sent[event.line].append(stamped.timestamp)
                publisher.close()
                deadline = (
                    time.time() + settings.processor_lateness_s + settings.processor_idle_release_s + 30
                )
                while any(done[line] < len(sent[line]) for line in sent) and time.time() < deadline:
                    time.sleep(args.poll)
                stop.set()
                watcher.join()
                dead = [c.name for c in children if not c.alive()]
                if dead:
                    sys.exit(f"died: {dead}; logs in {run / 'logs'}")
                unseen = sum(len(sent[line]) - done[line] for line in sent)
            finally:
                for child in children:
                    child.stop()
    lateness, idle = settings.processor_lateness_s, settings.processor_idle_release_s
    figures = {
        "rate": args.rate,
        "events": len(events),
        "measured": len(latencies),
        "unseen": unseen,
        "lateness_s": lateness,
        "idle_release_s": idle,
        "publish_to_influx_p50": percentile(latencies, 0.5),
        "publish_to_influx_p99": percentile(latencies, 0.99),
        "publish_to_influx_max": max(latencies),
        "publish_lag_p99": percentile(lags, 0.99),
    }
    print(f"events: {len(events)} at {args.rate:.0f} events/s, {len(latencies)} measured after warm-up")
    print(f"lateness_s: {lateness:g} s, idle_release_s: {idle:g} s (baseline: the floor is the lateness)")
    for name in ("publish_to_influx_p50", "publish_to_influx_p99", "publish_to_influx_max"):
        over = figures[name] - lateness
        print(
            f"{name}: {figures[name]:.2f} s, {over:+.2f} s over the lateness, "
            f"ratio {figures[name] / max(lateness, 1e-9):.2f} of it"
        )
    goal = "meets" if figures["publish_to_influx_p99"] <= lateness + 1 else "misses"
    print(f"goal p99 <= lateness + 1 s: {goal}")
    print(
        f"publish_lag_p99: {figures['publish_lag_p99'] * 1000:.1f} ms behind schedule; "
        f"unseen: {unseen} events"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "latency", **figures}, indent=1) + "\n")


def poll(
    target: InfluxTarget,
    site: str,
    sent: dict[str, list[float]],
    visible: dict[str, float],
    done: dict[str, int],
    latencies: list[float],
    measure_from: float,
) -> None:
    """Read each line's newest WIP point; give every event it covers its latency."""
    series = query(target, f'SELECT last("parts") FROM "wip" WHERE "site" = \'{site}\' GROUP BY "line"')
    now = time.time()
    for row in rows(series):
        line, newest = row["line"], row["time"] / 1e6
        if newest <= visible[line]:
            continue
        visible[line] = newest
        times = sent[line]
        upto = bisect.bisect_right(times, newest + 1e-6)
        latencies.extend(now - t for t in times[done[line] : upto] if t >= measure_from)
        done[line] = max(done[line], upto)


if __name__ == "__main__":
    main()
