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
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.mqtt_hop import CPU_BUDGET, assigned, cpu_seconds  # noqa: E402
from wipwatch.events import Event, encode_event, topic_for  # noqa: E402
from wipwatch.influx import InfluxTarget, query, rows  # noqa: E402
from wipwatch.ingest import wait_subscribed  # noqa: E402
from wipwatch.measurements import DATA_QUALITY, THROUGHPUT  # noqa: E402
from wipwatch.mqtt import MqttPublisher  # noqa: E402
from wipwatch.services import (  # noqa: E402
    ChildProcess,
    NativeStack,
    Ports,
    free_port,
    port_in_use,
    python_module_argv,
    spawn,
    wait_until,
)
from wipwatch.settings import REPO_ROOT, load_settings  # noqa: E402
from wipwatch.simulators.line import simulate_site  # noqa: E402
from wipwatch.site import load_site  # noqa: E402

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
        #: (publish time, latency) of each measured event: the trend says whether the path keeps pace.
        self.samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    @property
    def latencies(self) -> list[float]:
        return [latency for _, latency in self.samples]

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
            self.samples.extend((t, now - t) for t in times[first:upto] if t >= start)
            self.done[line] = upto

    def unseen(self) -> int:
        return sum(len(self.sent[line]) - self.done[line] for line in self.sent)


def by_thirds(samples: list[tuple[float, float]], q: float) -> list[float]:
    """The ``q`` quantile of the latencies of events published in each third of the measured window.

    Flat thirds near the lateness: the path keeps pace with the rate. Growing ones: a backlog builds (the
    rate is above what the machine carries), and the figures depend on how long the bench runs. Flat ones
    far above the lateness: a standing backlog (e.g. from the start) that the path does not work off.
    """
    if not samples:
        return [float("nan")] * 3
    first, last = min(t for t, _ in samples), max(t for t, _ in samples)
    span = max(last - first, 1e-9)
    thirds: list[list[float]] = [[], [], []]
    for t, latency in samples:
        thirds[min(2, int(3 * (t - first) / span))].append(latency)
    return [percentile(third, q) for third in thirds]


def timeline(samples: list[tuple[float, float]], began: float) -> list[list[float]]:
    """[second of publishing, events published in it, p50 and max latency] per whole second.

    Where a backlog began, and the rate the path carried: seconds of flat latency carried their events.
    """
    buckets: dict[int, list[float]] = {}
    for t, latency in samples:
        buckets.setdefault(int(t - began), []).append(latency)
    return [[k, len(v), round(percentile(v, 0.5), 3), round(max(v), 3)] for k, v in sorted(buckets.items())]


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
                # INFO: the partition assignment is logged; publishing starts after it, so that no backlog
                # from the group join is in the figures (at high rates it may never be worked off)
                processors = spawn(
                    "processors",
                    python_module_argv("process"),
                    run / "logs",
                    {**env, "WIPWATCH_LOG_LEVEL": "INFO"},
                )
                children.append(processors)
                board_argv = python_module_argv("board", "--port", str(board_port))
                children.append(spawn("board", board_argv, run / "logs", env))
                wait_until(children[-1], lambda: port_in_use(board_port), timeout=60)
                wait_until(processors, lambda: assigned(processors.log_path), timeout=180)
                cpu_before = {c.name: cpu_seconds(c.pid) for c in children}
                servers_before = {name: cpu_seconds(c.pid) for name, c in stack.children.items()}
                own_before = time.process_time()
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
                published = time.time()
                # this process while publishing: the load generator (its observers' threads included)
                publisher_cpu = time.process_time() - own_before
                deadline = (
                    time.time() + settings.processor_lateness_s + settings.processor_idle_release_s + 30
                )
                while (influx_seen.unseen() or board_seen.unseen()) and time.time() < deadline:
                    time.sleep(args.poll)
                drained = time.time()
                stop.set()
                for observer in observers:
                    observer.join(timeout=10)
                # CPU an event of each process from the start of publishing to the last event seen
                cpu = {"publisher": publisher_cpu, "ingest": 0.0, "processors": 0.0, "board": 0.0}
                for child in children:
                    who = "ingest" if "ingest" in child.name else child.name
                    cpu[who] += cpu_seconds(child.pid) - cpu_before[child.name]
                for name, server in stack.children.items():
                    cpu[name] = cpu_seconds(server.pid) - servers_before[name]
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
    figures: dict[str, Any] = {
        "rate": args.rate,
        "events": len(events),
        "lateness_s": lateness,
        "idle_release_s": idle,
        "board_interval_s": settings.board_interval,
        "publish_lag_p99": percentile(lags, 0.99),
        "ingest_processes": args.ingest,
        "late_events": int(late[0]["n"]) if late else 0,
        "publish_seconds": published - began,
        "drain_seconds": drained - published,
        **{f"cpu_{who}_us_per_event": 1e6 * seconds / len(events) for who, seconds in cpu.items()},
        "cores_used": sum(cpu.values()) / max(drained - began, 1e-9),
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
        figures[f"{name}_timeline"] = timeline(seen.samples, began)
        thirds = by_thirds(seen.samples, 0.99)
        figures.update({f"{name}_p99_third{k + 1}": v for k, v in enumerate(thirds)})
        print(
            f"publish_to_{name}_p99 by third of the window: " + " / ".join(f"{v:.2f}" for v in thirds) + " s "
            "(flat near the lateness: keeps pace; growing: a backlog builds; "
            "flat far above: a standing backlog)"
        )
    goal = "meets" if figures["influx_p99"] <= lateness + 1 else "misses"
    print(f"goal p99 publish -> InfluxDB <= lateness + 1 s: {goal}")
    print(
        f"late_events: {figures['late_events']} (arrived after their place was passed; "
        f"{args.ingest} ingest process(es))"
    )
    print(f"publish_lag_p99: {figures['publish_lag_p99'] * 1000:.1f} ms behind schedule")
    print(
        f"published in {figures['publish_seconds']:.1f} s "
        f"({len(events) / figures['publish_seconds']:.0f} events/s), "
        f"the last event seen {figures['drain_seconds']:.1f} s later"
    )
    order = [*CPU_BUDGET, "board"]
    print(
        f"cpu: {sum(figures[f'cpu_{w}_us_per_event'] for w in order):.0f} us an event in all ("
        + ", ".join(f"{w} {figures[f'cpu_{w}_us_per_event']:.0f}" for w in order)
        + f"), {figures['cores_used']:.2f} cores over publishing and draining"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "latency", **figures}, indent=1) + "\n")


if __name__ == "__main__":
    main()
