"""Live latency: publish at a steady rate with event time = now; measure until InfluxDB and the board show it.

A fresh native stack (mosquitto, Apache Kafka, influxd) with ``wipwatch ingest``, ``wipwatch process`` and
``wipwatch board`` as children. The events are a simulated shift of the 3-line site, published in order at
``--rate`` events/s with their time set to the wall clock at publishing. Each line's ``throughput`` point
at ``location = _line`` carries ``events``, how many events the line has applied (docs/metrics.md); the
line applies its events in event-time order, which is the order they were published in, so a count of
``k`` says the line's first ``k`` events are in the figures. Two observers turn counts into latencies:
(a) a poll of InfluxDB every ``--poll`` s (its own thread), (b) the board's live-update stream (SSE,
``/events``, one snapshot every ``--board-interval`` s), read as a browser would. Events published
before ``--warmup`` s after an observer's first figure are left out (the consumer group's join and the
catch-up after it, 10-40 s on a loaded machine, are no steady state). Figures:
- ``influx_p50/p99/max``: seconds from publishing to the event's effect in InfluxDB (at most ``--poll`` late);
- ``board_p50/p99/max``: seconds from publishing to the board's first live update that includes it;
- ``late_events``: events that came after their place in event time was passed (data quality ``late``):
  the disorder the lateness did not absorb, e.g. with ``--ingest 2`` on the shared subscription;
- beside them the lateness and idle release settings (an event waits for the lateness only where the
  release policy makes it: docs/metrics.md, "Live latency"), and ``publish_lag_p99``, how late the
  publisher itself ran behind its schedule.

Run: ``.venv/bin/python bench/latency.py [--rate 1000] [--seconds 60] [--lateness 5] [--idle-release 2]``.
Writes bench/results/latency.json too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from wipwatch.events import Event, encode_event, topic_for
from wipwatch.influx import InfluxTarget, query, rows
from wipwatch.ingest import wait_subscribed
from wipwatch.measurements import DATA_QUALITY, THROUGHPUT
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import (
    ChildProcess,
    NativeStack,
    Ports,
    free_port,
    port_in_use,
    python_module_argv,
    spawn,
    wait_until,
)
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

SITE_FILE = REPO_ROOT / "bench" / "sites" / "three-lines.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "latency.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


class Coverage:
    """What one observer has seen: per line, how many of its published events the figures include."""

    def __init__(self, sent: dict[str, list[float]], warmup: float) -> None:
        self.sent = sent
        self.warmup = warmup
        #: Events published from here on are measured: ``warmup`` after the observer's first figure.
        self.measure_from: float | None = None
        self.done = {line: 0 for line in sent}
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def saw(self, line: str, applied: float | None, now: float) -> None:
        """At wall time ``now`` the observer saw ``applied`` events of ``line`` in the figures."""
        if applied is None or line not in self.sent:
            return
        with self._lock:
            if self.measure_from is None:
                self.measure_from = now + self.warmup
            times = self.sent[line]
            upto = min(int(applied), len(times))
            first = self.done[line]
            if upto <= first:
                return
            start = self.measure_from
            self.latencies.extend(now - t for t in times[first:upto] if t >= start)
            self.done[line] = upto

    def unseen(self) -> int:
        return sum(len(self.sent[line]) - self.done[line] for line in self.sent)


def poll_influx(target: InfluxTarget, site: str, seen: Coverage, stop: threading.Event, every: float) -> None:
    """(a) Each line's newest ``events`` count in InfluxDB, every ``every`` seconds."""
    influxql = (
        f'SELECT last("events") AS "events" FROM "{THROUGHPUT}" '
        f'WHERE "site" = \'{site}\' AND "location" = \'_line\' GROUP BY "line"'
    )
    while not stop.wait(every):
        found = rows(query(target, influxql))
        now = time.time()
        for row in found:
            seen.saw(row["line"], row.get("events"), now)


def read_board(port: int, seen: Coverage, stop: threading.Event) -> None:
    """(b) The board's live-update stream, as the page's EventSource reads it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/events", headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"board /events answered {response.status}")
    try:
        while not stop.is_set():
            raw = response.fp.readline()
            if not raw:
                return
            text = raw.decode().strip()
            if not text.startswith("data:"):
                continue
            now = time.time()
            payload = json.loads(text[5:])
            for line in payload.get("lines", []):
                seen.saw(line["id"], line.get("events"), now)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to publish")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds after the first figure left out (catch-up)"
    )
    parser.add_argument("--lateness", type=float, default=None, help="WIPWATCH_PROCESSOR_LATENESS_S")
    parser.add_argument("--idle-release", type=float, default=None, help="WIPWATCH_PROCESSOR_IDLE_RELEASE_S")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between InfluxDB polls")
    parser.add_argument("--board-interval", type=float, default=None, help="WIPWATCH_BOARD_INTERVAL")
    parser.add_argument("--ingest", type=int, default=1, help="ingest processes on the shared subscription")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the children")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    site = load_site(SITE_FILE)
    events: list[Event] = []
    hours = args.rate * args.seconds / 11_000 + 1  # the 3-line site makes about 11,800 events an hour
    simulate_site(
        site, events.append, seed=8, duration=hours * 3600, start=datetime(2026, 11, 25, tzinfo=UTC)
    )
    events = events[: int(args.rate * args.seconds)]
    overrides = {
        "processor_lateness_s": args.lateness,
        "processor_idle_release_s": args.idle_release,
        "board_interval": args.board_interval,
    }
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
        board_port = free_port()
        env = {
            "WIPWATCH_SITE_FILE": str(SITE_FILE),
            "WIPWATCH_RUN_DIR": str(run),
            "WIPWATCH_MQTT_PORT": str(stack.mqtt_port),
            "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "WIPWATCH_INFLUX_URL": stack.influx_url,
            "WIPWATCH_LOG_LEVEL": "WARNING",
            "WIPWATCH_PROCESSOR_LATENESS_S": str(settings.processor_lateness_s),
            "WIPWATCH_PROCESSOR_IDLE_RELEASE_S": str(settings.processor_idle_release_s),
            "WIPWATCH_BOARD_INTERVAL": str(settings.board_interval),
            **dict(pair.split("=", 1) for pair in args.env),
        }
        with stack.running():
            target = InfluxTarget.from_settings(settings)
            children: list[ChildProcess] = []
            try:
                for n in range(1, args.ingest + 1):
                    client_id = f"wipwatch-ingest-{n}"
                    ingest_env = {**env, "WIPWATCH_INGEST_CLIENT_ID": client_id}
                    children.append(spawn(client_id, python_module_argv("ingest"), run / "logs", ingest_env))
                    wait_subscribed(children[-1], run, client_id)
                children.append(spawn("processors", python_module_argv("process"), run / "logs", env))
                board_argv = python_module_argv("board", "--port", str(board_port))
                children.append(spawn("board", board_argv, run / "logs", env))
                wait_until(children[-1], lambda: port_in_use(board_port), timeout=60)
                # the processors join their consumer group within a few seconds; warm-up covers it
                publisher = MqttPublisher("127.0.0.1", stack.mqtt_port, "bench-latency")
                sent: dict[str, list[float]] = {line.id: [] for line in site.lines}  # publish times
                lags: list[float] = []
                began = time.time()
                influx_seen = Coverage(sent, args.warmup)
                board_seen = Coverage(sent, args.warmup)
                stop = threading.Event()
                observers = [
                    threading.Thread(
                        target=poll_influx,
                        args=(target, site.site, influx_seen, stop, args.poll),
                        daemon=True,
                    ),
                    threading.Thread(target=read_board, args=(board_port, board_seen, stop), daemon=True),
                ]
                for observer in observers:
                    observer.start()
                for i, event in enumerate(events):
                    due = began + i / args.rate
                    now = time.time()
                    if due > now:
                        time.sleep(due - now)
                    now = time.time()
                    lags.append(now - due)
                    stamped = msgspec.structs.replace(event, time=datetime.fromtimestamp(now, UTC))
                    sent[event.line].append(stamped.timestamp)  # before publishing: never seen before sent
                    publisher.publish(topic_for(stamped), encode_event(stamped))
                publisher.close()
                deadline = (
                    time.time() + settings.processor_lateness_s + settings.processor_idle_release_s + 30
                )
                while (influx_seen.unseen() or board_seen.unseen()) and time.time() < deadline:
                    time.sleep(args.poll)
                stop.set()
                for observer in observers:
                    observer.join(timeout=10)
                late = rows(
                    query(
                        target,
                        f'SELECT sum("count") AS n FROM "{DATA_QUALITY}" WHERE "reason" = \'late\'',
                    )
                )
                dead = [c.name for c in children if not c.alive()]
                if dead:
                    sys.exit(f"died: {dead}; logs in {run / 'logs'}")
            finally:
                for child in children:
                    child.stop()
    lateness, idle = settings.processor_lateness_s, settings.processor_idle_release_s
    figures: dict[str, float | int] = {
        "rate": args.rate,
        "events": len(events),
        "lateness_s": lateness,
        "idle_release_s": idle,
        "board_interval_s": settings.board_interval,
        "publish_lag_p99": percentile(lags, 0.99),
        "ingest_processes": args.ingest,
        "late_events": int(late[0]["n"]) if late else 0,
    }
    print(
        f"events: {len(events)} at {args.rate:.0f} events/s; left out: those published before "
        f"{args.warmup:g} s after each observer's first figure (consumer-group join, catch-up)"
    )
    print(
        f"lateness_s: {lateness:g} s, idle_release_s: {idle:g} s, "
        f"board interval {settings.board_interval:g} s (baseline: the lateness, beside each figure)"
    )
    for name, seen in (("influx", influx_seen), ("board", board_seen)):
        figures[f"{name}_measured"] = len(seen.latencies)
        figures[f"{name}_unseen"] = seen.unseen()
        for label, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            value = percentile(seen.latencies, q)
            figures[f"{name}_{label}"] = value
            print(
                f"publish_to_{name}_{label}: {value:.2f} s, {value - lateness:+.2f} s beside the lateness, "
                f"ratio {value / max(lateness, 1e-9):.2f} of it"
            )
        print(f"{name}: {len(seen.latencies)} measured, {seen.unseen()} unseen")
    goal = "meets" if figures["influx_p99"] <= lateness + 1 else "misses"
    print(f"goal p99 publish -> InfluxDB <= lateness + 1 s: {goal}")
    print(
        f"late_events: {figures['late_events']} (arrived after their place was passed; "
        f"{args.ingest} ingest process(es))"
    )
    print(f"publish_lag_p99: {figures['publish_lag_p99'] * 1000:.1f} ms behind schedule")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "latency", **figures}, indent=1) + "\n")


if __name__ == "__main__":
    main()
