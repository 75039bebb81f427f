"""Alert latency in live mode: condition true in event time -> MQTT retained state / Alertmanager has it.

One run on fresh native servers (mosquitto, Kafka, influxd, Alertmanager) with ``wipwatch ingest`` and
``wipwatch process`` as child processes, default settings (lateness 2 s), a one-line site whose buffer ``q``
has a cap of 5 and one rule ``wip_over_cap`` with ``for: 0``, evaluated every second of event time.

Events are published at ``--rate`` events/s (default 1,000) with event time = the wall clock: a steady flow
of parts in and out of a store, and every ``--period`` seconds six parts into ``q`` (the sixth makes the
condition true, at its event time) and two seconds later out again (the alert resolves). Figures:

- ``mqtt_hop``: publish -> a subscriber receives the event (the floor's own hop; the baseline);
- ``alert_mqtt``: condition true -> the retained alert message arrives at a subscriber;
- ``alert_alertmanager``: condition true -> ``GET /api/v2/alerts`` of Alertmanager lists it (polled every
  20 ms);

each as p50 and p99 over the episodes, with the ratio to the baseline's p50. The floor of the alert
latency is the processors' lateness (events wait that long for stragglers) plus up to one evaluation step.

Run: ``.venv/bin/python bench/alerts.py [--seconds 120] [--rate 1000] [--lateness S]`` (default: the
setting's default). Writes bench/results/alerts.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from wipwatch.events import PartIn, PartOut, encode_event, topic_for
from wipwatch.ingest import wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import NativeStack, Ports, free_port, python_module_argv, spawn
from wipwatch.settings import REPO_ROOT, Settings

RESULTS = REPO_ROOT / "bench" / "results" / "alerts.json"
SITE = {
    "site": "bench",
    "alerts": {
        "defaults": False,
        "evaluate_every": 1,
        "rules": [{"id": "q-cap", "condition": "wip_over_cap", "scope": {"location": "q"}}],
    },
    "lines": [
        {
            "id": "l1",
            "locations": [
                {"id": "src", "kind": "store"},
                {"id": "q", "kind": "buffer", "cap": 5},
                {"id": "m", "kind": "station", "process_time": {"mean": 1}},
            ],
        }
    ],
}
AM_CONFIG = "route: {receiver: none}\nreceivers: [{name: none}]\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


class Watcher:
    """Records when each alert's retained firing message and each trigger event arrive."""

    def __init__(self, port: int) -> None:
        self.alerts: dict[int, float] = {}  # seq -> arrival
        self.triggers: dict[str, float] = {}  # event id -> arrival
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self._client.on_message = self._message
        self._client.connect("127.0.0.1", port)
        self._client.subscribe([("wipwatch/alerts/#", 1), ("wipwatch/bench/l1/q/in", 1)])
        self._client.loop_start()

    def _message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        if message.topic.startswith("wipwatch/alerts/"):
            if message.payload:
                self.alerts.setdefault(json.loads(message.payload)["seq"], now)
        else:
            self.triggers.setdefault(json.loads(message.payload)["id"], now)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def poll_alertmanager(url: str, seen: dict[str, float], stop: threading.Event) -> None:
    """startsAt of each alert Alertmanager lists -> when it was first listed."""
    while not stop.is_set():
        with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
            now = time.time()
            for alert in json.load(response):
                seen.setdefault(alert["startsAt"], now)
        stop.wait(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--period", type=float, default=4.0)
    parser.add_argument(
        "--lateness",
        type=float,
        default=Settings.model_fields["processor_lateness_s"].default,
        help="WIPWATCH_PROCESSOR_LATENESS_S (default: the setting's default)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wipwatch-bench-alerts-") as tmp_dir:
        tmp = Path(tmp_dir)
        site_file = tmp / "site.yaml"
        site_file.write_text(yaml.safe_dump(SITE))
        (tmp / "am.yml").write_text(AM_CONFIG)
        stack = NativeStack(tmp / "stack", Ports.free(), alertmanager=(free_port(), tmp / "am.yml"))
        with stack.running():
            am_url = stack.children["alertmanager"].address
            env = {
                "WIPWATCH_SITE_FILE": str(site_file),
                "WIPWATCH_RUN_DIR": str(tmp / "run"),
                "WIPWATCH_MQTT_PORT": str(stack.mqtt_port),
                "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
                "WIPWATCH_INFLUX_URL": stack.influx_url,
                "WIPWATCH_ALERTMANAGER_URL": am_url,
                "WIPWATCH_PROCESSOR_LATENESS_S": str(args.lateness),
            }
            children = [spawn("ingest", python_module_argv("ingest"), tmp / "logs", env)]
            try:
                wait_subscribed(children[0], tmp / "run", "wipwatch-ingest-1")
                children.append(spawn("processors", python_module_argv("process"), tmp / "logs", env))
                figures = run(stack.mqtt_port, am_url, args)
            finally:
                for child in children:
                    child.stop()
    hop, alert_mqtt, alert_am = figures["mqtt_hop"], figures["alert_mqtt"], figures["alert_alertmanager"]
    base = statistics.median(hop)
    print(
        f"episodes: {len(alert_mqtt)} at {args.rate:,.0f} events/s for {args.seconds:g} s, "
        f"lateness {args.lateness:g} s"
    )
    for name, values in (("mqtt_hop", hop), ("alert_mqtt", alert_mqtt), ("alert_alertmanager", alert_am)):
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(f"{name}_p50: {p50 * 1000:,.0f} ms ({p50 / base:,.0f}x mqtt_hop_p50)")
        print(f"{name}_p99: {p99 * 1000:,.0f} ms ({p99 / base:,.0f}x mqtt_hop_p50)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        f"{name}_{q}_ms": percentile(values, int(q[1:])) * 1000
        for name, values in figures.items()
        for q in ("p50", "p99")
    }
    run_info = {"time": time.time(), "rate": args.rate, "lateness_s": args.lateness}
    RESULTS.write_text(json.dumps({**run_info, **summary}, indent=2))


def run(mqtt_port: int, am_url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    watcher = Watcher(mqtt_port)
    seen_am: dict[str, float] = {}
    stop = threading.Event()
    poller = threading.Thread(target=poll_alertmanager, args=(am_url, seen_am, stop), daemon=True)
    poller.start()
    publisher = MqttPublisher("127.0.0.1", mqtt_port, "bench-alerts")
    true_at: dict[int, float] = {}  # seq of the firing -> event time the condition became true
    sent_at: dict[str, float] = {}  # trigger event id -> publish time
    step = 0.01
    per_step = max(1, round(args.rate * step))
    began = time.time()
    next_trigger = began + 3.0
    n = 0
    episode = 0
    try:
        while time.time() - began < args.seconds:
            tick = began + n * step
            delay = tick - time.time()
            if delay > 0:
                time.sleep(delay)
            for k in range(per_step):
                now = time.time()
                cls = PartIn if k % 2 == 0 else PartOut
                part = f"flow-{n}-{k // 2}"
                when = datetime.fromtimestamp(now, UTC)
                event = cls(
                    v=1, id=f"f{n}-{k}", time=when, site="bench", line="l1", location="src", part=part
                )
                publisher.publish(topic_for(event), encode_event(event))
            if time.time() >= next_trigger:
                episode += 1
                for i in range(6):
                    now = time.time()
                    when = datetime.fromtimestamp(now, UTC)
                    event_id = f"t{episode}-{i}"
                    event = PartIn(
                        v=1,
                        id=event_id,
                        time=when,
                        site="bench",
                        line="l1",
                        location="q",
                        part=f"e{episode}-{i}",
                    )
                    publisher.publish(topic_for(event), encode_event(event))
                    sent_at[event_id] = now
                true_at[2 * episode - 1] = now  # the sixth part: WIP 6 > cap 5
                threading.Timer(2.0, lambda e=episode: drain(publisher, e)).start()
                next_trigger += args.period
            n += 1
        deadline = time.time() + 30
        while time.time() < deadline and len(watcher.alerts) < len(true_at):
            time.sleep(0.1)
    finally:
        stop.set()
        poller.join(10)
        publisher.close()
        watcher.close()
    hop = [watcher.triggers[i] - sent_at[i] for i in sent_at if i in watcher.triggers]
    alert_mqtt = [watcher.alerts[s] - t for s, t in true_at.items() if s in watcher.alerts]
    starts = {datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds"): t for t in true_at.values()}
    alert_am = []
    for starts_at, first in seen_am.items():
        t = _match(starts_at, starts)
        if t is not None:
            alert_am.append(first - t)
    return {"mqtt_hop": hop, "alert_mqtt": alert_mqtt, "alert_alertmanager": alert_am}


def _match(starts_at: str, starts: dict[str, float]) -> float | None:
    """The condition-true time of the episode whose firing tick Alertmanager shows as ``startsAt``."""
    fired = datetime.fromisoformat(starts_at.replace("Z", "+00:00")).timestamp()
    # the alert fires at the first evaluation tick (whole seconds) at or after the condition became true
    candidates = [t for t in starts.values() if 0 <= fired - t < 1.0 + 1e-6]
    return candidates[0] if len(candidates) == 1 else None


def drain(publisher: MqttPublisher, episode: int) -> None:
    now = datetime.now(UTC)
    for i in range(6):
        event = PartOut(
            v=1, id=f"d{episode}-{i}", time=now, site="bench", line="l1", location="q", part=f"e{episode}-{i}"
        )
        publisher.publish(topic_for(event), encode_event(event))


if __name__ == "__main__":
    main()
