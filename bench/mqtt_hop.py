"""The MQTT hop at broker speed: wipwatch's publisher and ingest beside mosquitto's own C clients.

Figures, all in one run on one fresh native stack (mosquitto, Apache Kafka, influxd):
- ``c_pub_sub_rate``: ``mosquitto_pub -l -q 1`` into ``mosquitto_sub -q 1 -C n`` (the baseline: the
  broker and its C clients, no Python);
- ``paho_publish_rate``: the previous publisher (one paho connection, a Condition-capped window), nothing
  subscribed;
- ``publish_rate``: :class:`wipwatch.mqtt.MqttPublisher`, nothing subscribed;
- ``publish_to_c_sub_rate``: the same into ``mosquitto_sub -q 1`` until it has every message;
- ``ingest_rate``: MQTT -> ingest (``--ingest`` processes on one shared subscription) -> Kafka, until the
  ingest status files count every event accepted (they are rewritten every second: +-1 s);
- ``e2e_<service>_cpu``: CPU seconds each process (publisher, mosquitto, ingest, Kafka, processors,
  influxd) used in that phase, as a share of a core
  and per event (a low share beside a low rate: the machine, not the code, set the rate);
- ``end_to_end_rate``: publisher -> ingest -> Kafka -> processors -> InfluxDB until the WIP of every
  location in InfluxDB equals the simulator's ground truth (lossless, no double counting), timed from
  the moment the processors hold their partitions (their start-up is not counted). With
  ``--ingest 2`` or more at full speed this phase does not finish: the shared subscription deals a line's
  events round robin to the instances, which forward them in batches, so a line's events reach Kafka out
  of order by far more event time than the lateness (a whole shift is published in seconds), and the
  processors count those as late (docs/operations.md).

Run: ``.venv/bin/python bench/mqtt_hop.py [--hours 12] [--ingest 1] [--processors 1] [--e2e-rounds 1]
[--profile DIR]``: ``--processors`` workers in one group; ``--e2e-rounds`` end-to-end phases on the same
servers (each with its own topics and InfluxDB database; the figures are the last one's, each phase's rate
and CPU a line). ``--profile`` samples
the ingest processes (and in the end-to-end phase the processors) with py-spy (``pip install py-spy``)
for 20 s into ``DIR/<phase>-<process>.txt`` and prints where each spent its time. Writes
bench/results/mqtt_hop.json too.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from wipwatch.events import encode_event, topic_for
from wipwatch.ingest import read_status, wait_subscribed
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import (
    ChildProcess,
    NativeStack,
    Ports,
    disk_usage,
    python_module_argv,
    spawn,
    wait_until,
)
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site
from wipwatch.views import wip_snapshot

SITE_FILE = REPO_ROOT / "bench" / "sites" / "three-lines.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "mqtt_hop.json"
GOAL_RATE = 20_000.0
#: The processes of the end-to-end phase whose CPU is counted (NativeStack's names for the servers).
CPU_BUDGET = ("publisher", "mosquitto", "ingest", "kafka", "processors", "influxdb")


class PahoPublisher:
    """The publisher wipwatch had before (kept here as a baseline): paho's loop, a Condition per message."""

    def __init__(self, port: int, client_id: str, max_outstanding: int = 5000) -> None:
        self._max, self._outstanding = max_outstanding, 0
        self._cond = threading.Condition()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        connected = threading.Event()
        self._client.on_connect = lambda *_a: connected.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        connected.wait(30)

    def _on_publish(self, *_args: Any) -> None:
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        with self._cond:
            while self._outstanding >= self._max:
                self._cond.wait(1.0)
            self._outstanding += 1
        self._client.publish(topic, payload, qos=1)

    def close(self) -> None:
        with self._cond:
            while self._outstanding:
                self._cond.wait(0.5)
        self._client.disconnect()
        self._client.loop_stop()


READY_TOPIC = "wipwatch/bench/ready"


def c_sub(port: int, count: int, out: Path) -> subprocess.Popen[bytes]:
    """``mosquitto_sub`` that exits after ``count`` messages; returns once it is subscribed.

    The broker holds a retained message on ``READY_TOPIC`` (which the ingest's four-level filter does not
    match): the subscriber's first line is that message, proof that its subscription is in place.
    """
    argv = ["mosquitto_sub", "-p", str(port), "-q", "1", "-t", "wipwatch/#", "-C", str(count + 1)]
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while out.stat().st_size == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"mosquitto_sub did not subscribe: {out.read_text()}")
        time.sleep(0.01)
    return proc


def c_baseline(port: int, messages: list[tuple[str, bytes]], work: Path) -> float:
    """mosquitto_pub -l -q 1 -> mosquitto_sub -q 1: messages per second, the whole hop in C."""
    lines = work / "lines.txt"
    lines.write_bytes(b"".join(payload + b"\n" for _, payload in messages))
    sub = c_sub(port, len(messages), work / "c-sub.out")
    began = time.perf_counter()
    # stdin stays open until the subscriber has everything: at end of input mosquitto_pub disconnects at
    # once, and QoS 1 messages its library had not yet sent are lost (seen with mosquitto 2.0.11)
    pub = subprocess.Popen(
        ["mosquitto_pub", "-p", str(port), "-q", "1", "-l", "-t", "wipwatch/bench/x"], stdin=subprocess.PIPE
    )
    assert pub.stdin is not None
    with open(lines, "rb") as source:
        shutil.copyfileobj(source, pub.stdin)
    pub.stdin.flush()
    sub.wait(600)
    rate = len(messages) / (time.perf_counter() - began)
    pub.stdin.close()
    pub.wait(30)
    return rate


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assigned(log: Path) -> bool:
    """Whether a processors worker logged an assignment of events-topic partitions."""
    return bool(re.search(r"assigned topic=\S+ partitions=\[\d", log.read_text(errors="replace")))


def publish_all(publisher: Any, messages: list[tuple[str, bytes]]) -> float:
    began = time.perf_counter()
    for topic, payload in messages:
        publisher.publish(topic, payload)
    publisher.close()
    return len(messages) / (time.perf_counter() - began)


def profile(pids: dict[str, int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "-r",
                "100",
                "-f",
                "raw",
                "--threads",
                "-d",
                str(int(seconds)),
                "-o",
                str(out / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def hotspots(raw: Path, top: int = 12) -> list[str]:
    """The functions a py-spy raw profile saw most, as percentages of the samples: own time (the frame
    running), then inclusive time past the frames every sample shares (the loop and the CLI)."""
    total, own, inclusive = 0, collections.Counter[str](), collections.Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        total += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames[1:]):
            inclusive[frame] += int(n)
    shared = sum(1 for n in inclusive.values() if n >= 0.97 * total)
    return [
        f"samples: {total}",
        *(f"{100 * n / max(total, 1):5.1f}% own {frame}" for frame, n in own.most_common(top)),
        *(
            f"{100 * n / max(total, 1):5.1f}% incl {frame}"
            for frame, n in inclusive.most_common(shared + top)[shared:]
        ),
    ]


def report(figures: dict[str, float], hours: float, ingest: int) -> None:
    """Print every figure measured so far, each beside the C clients' rate of the same run."""
    c = figures["c_pub_sub_rate"]
    print(f"messages: {figures['messages']:.0f} messages ({hours:g} h, 3 lines, 33 locations)")
    print(f"c_pub_sub_rate: {c:.0f} msg/s (baseline: mosquitto_pub -l -q 1 -> mosquitto_sub -q 1)")
    for name in (
        "paho_publish_rate",
        "publish_rate",
        "publish_to_c_sub_rate",
        "ingest_rate",
        "end_to_end_rate",
    ):
        if name in figures:
            value = figures[name]
            goal = "meets" if value >= GOAL_RATE else "misses"
            print(
                f"{name}: {value:.0f} msg/s, ratio {value / c:.3f} of c_pub_sub_rate ({goal} {GOAL_RATE:.0f})"
            )
    if "paho_publish_rate" in figures:
        print(
            "publish_speedup: "
            f"{figures['publish_rate'] / figures['paho_publish_rate']:.1f}x the paho publisher"
        )
    if "ingest_split" in figures:
        print(f"ingest_processes: {ingest}, split min/max {figures['ingest_split']:.2f}")
    print(f"receive_maximum: {figures['receive_maximum']:.0f} (each ingest process)")
    if "e2e_load_1m" in figures:
        print(f"e2e_load_1m: {figures['e2e_load_1m']:.1f} (load average at the end, 2 cores)")
    budget = 0.0
    for who in CPU_BUDGET:
        if f"e2e_{who}_cpu_s" in figures:
            budget += figures[f"e2e_{who}_cpu_s"]
            cpu = figures[f"e2e_{who}_cpu_s"]
            print(
                f"e2e_{who}_cpu: {cpu:.1f} s CPU in {figures['e2e_wall_s']:.1f} s "
                f"({cpu / figures['e2e_wall_s']:.2f} of a core), "
                f"{1e6 * cpu / figures['messages']:.0f} us an event"
            )
    for topic in ("events", "changelog"):
        if f"e2e_kafka_{topic}_bytes" in figures:
            size = figures[f"e2e_kafka_{topic}_bytes"]
            print(
                f"e2e_kafka_{topic}: {size / 1e6:.1f} MB on disk, "
                f"{size / figures['messages']:.0f} bytes an event"
            )
    if budget:
        per_event = budget / figures["messages"]
        cores = os.cpu_count() or 1
        print(
            f"e2e_cpu_budget: {1e6 * per_event:.0f} us of CPU an event in all; {cores} cores fully used "
            f"would carry at most {cores / per_event:.0f} events/s ({GOAL_RATE:.0f} needs "
            f"{1e6 * cores / GOAL_RATE:.0f} us an event)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours of the 3-line site")
    parser.add_argument("--ingest", type=int, default=1, help="ingest processes on the shared subscription")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", type=Path, help="py-spy the ingest processes into this directory")
    parser.add_argument("--skip-e2e", action="store_true", help="stop after the ingest figure")
    parser.add_argument(
        "--processors", type=int, default=1, help="processors workers in the end-to-end phase (one group)"
    )
    parser.add_argument(
        "--e2e-rounds",
        type=int,
        default=1,
        help="end-to-end phases on the same servers (fresh topics, ingest and processors each time): the "
        "later ones run on a broker whose JIT has compiled its paths; the figures are the last round's",
    )
    parser.add_argument(
        "--receive-maximum", type=int, default=65535, help="ingest's MQTT v5 Receive Maximum (1..65535)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    site = load_site(SITE_FILE)
    messages: list[tuple[str, bytes]] = []
    truth = simulate_site(
        site,
        lambda e: messages.append((topic_for(e), encode_event(e))),
        seed=5,
        duration=args.hours * 3600,
        start=datetime(2026, 11, 25, 6, tzinfo=UTC),
    )
    n = len(messages)
    expected_wip = {
        f"{line.id}/{loc.id}": truth.wip.get(f"{line.id}/{loc.id}", 0) for line, loc in site.iter_locations()
    }
    figures: dict[str, float] = {
        "messages": n,
        "ingest_processes": args.ingest,
        "receive_maximum": args.receive_maximum,
    }
    with tempfile.TemporaryDirectory(prefix="wipwatch-bench-hop-") as tmp:
        work = Path(tmp)
        stack = NativeStack(work / "stack", Ports.free())
        with stack.running():
            port = stack.mqtt_port
            subprocess.run(
                ["mosquitto_pub", "-p", str(port), "-q", "1", "-r", "-t", READY_TOPIC, "-m", "ready"],
                check=True,
            )
            figures["c_pub_sub_rate"] = c_baseline(port, messages, work)
            figures["paho_publish_rate"] = publish_all(PahoPublisher(port, "bench-paho"), messages)
            figures["publish_rate"] = publish_all(MqttPublisher("127.0.0.1", port, "bench-pub"), messages)
            sub = c_sub(port, n, work / "c-sub2.out")
            began = time.perf_counter()
            publisher = MqttPublisher("127.0.0.1", port, "bench-pub2")
            for topic, payload in messages:
                publisher.publish(topic, payload)
            publisher.close()
            sub.wait(600)
            figures["publish_to_c_sub_rate"] = n / (time.perf_counter() - began)

            rounds = [f"e2e{k}" if k else "e2e" for k in range(args.e2e_rounds)]
            for phase in ["ingest", *rounds]:
                if phase != "ingest" and args.skip_e2e:
                    break
                run = work / f"run-{phase}"
                names = {
                    "events_topic": f"wipwatch-events-{phase}",
                    "deadletter_topic": f"wipwatch-deadletter-{phase}",
                    "processor_id": f"wipwatch-processors-{phase}",
                    "ingest_share_group": f"ingest-{phase}",
                    # a database per phase: the same shift again would find the last round's points, whose
                    # WIP already equals the truth
                    "influx_db": f"wipwatch_{phase}",
                }
                env = {
                    "WIPWATCH_SITE_FILE": str(SITE_FILE),
                    "WIPWATCH_RUN_DIR": str(run),
                    "WIPWATCH_MQTT_PORT": str(port),
                    "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
                    "WIPWATCH_INFLUX_URL": stack.influx_url,
                    "WIPWATCH_LOG_LEVEL": "WARNING",
                    "WIPWATCH_INGEST_RECEIVE_MAXIMUM": str(args.receive_maximum),
                    **{f"WIPWATCH_{k.upper()}": v for k, v in names.items()},
                }
                settings = load_settings(
                    site_file=SITE_FILE,
                    run_dir=run,
                    mqtt_port=port,
                    kafka_bootstrap=stack.kafka_bootstrap,
                    influx_url=stack.influx_url,
                    **names,
                )
                body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{names["influx_db"]}"'}).encode()
                with urllib.request.urlopen(f"{stack.influx_url}/query", data=body, timeout=10) as answer:
                    answer.read()
                ids = [f"{phase}-ingest-{i}" for i in range(args.ingest)]
                children: list[ChildProcess] = []
                try:
                    for cid in ids:
                        child = spawn(
                            cid,
                            python_module_argv("ingest"),
                            run / "logs",
                            {**env, "WIPWATCH_INGEST_CLIENT_ID": cid},
                        )
                        children.append(child)
                        wait_subscribed(child, run, cid)
                    if phase != "ingest":
                        # timed from the processors' first partition assignment: their start-up (imports,
                        # group join: 10-30 s on a loaded machine) is no part of a sustained rate
                        workers = [
                            spawn(
                                f"{phase}-processors{k or ''}",
                                python_module_argv("process"),
                                run / "logs",
                                # a run directory each: Faust's data directory is per worker
                                {**env, "WIPWATCH_LOG_LEVEL": "INFO", "WIPWATCH_RUN_DIR": str(run / f"w{k}")},
                            )
                            for k in range(args.processors)
                        ]
                        children += workers
                        for worker in workers:
                            wait_until(worker, lambda w=worker: assigned(w.log_path), 180)
                    cpu_before = {c.name: cpu_seconds(c.pid) for c in children}
                    servers_before = {name: cpu_seconds(c.pid) for name, c in stack.children.items()}
                    bench_before = time.process_time()
                    spies = (
                        profile({c.name: c.pid for c in children}, 20, args.profile) if args.profile else []
                    )
                    publisher = MqttPublisher("127.0.0.1", port, f"bench-{phase}")
                    began = time.perf_counter()
                    for topic, payload in messages:
                        publisher.publish(topic, payload)
                    publisher.close()
                    published_cpu = time.process_time() - bench_before
                    deadline = began + args.timeout
                    while True:
                        if phase == "ingest":
                            statuses = [read_status(run, cid) or {} for cid in ids]
                            accepted = [int(s.get("accepted", 0)) for s in statuses]
                            if sum(accepted) >= n:
                                figures["ingest_split"] = min(accepted) / max(max(accepted), 1)
                                figures["ingest_accepted"] = sum(accepted)
                                break
                        else:
                            snapshot = wip_snapshot(settings)
                            got = {f"{x['line']}/{x['location']}": x["wip"] for x in snapshot["locations"]}
                            if got == expected_wip:
                                break
                        dead = [c.name for c in children if not c.alive()]
                        if dead or time.perf_counter() > deadline:
                            report(figures, args.hours, args.ingest)
                            sys.exit(f"{phase} did not finish (dead: {dead}); logs in {run / 'logs'}")
                        # each look is an InfluxDB query, whose CPU influxd's share counts: 4 a second
                        # (not 20) put at most 0.25 s on the end
                        time.sleep(0.05 if phase == "ingest" else 0.25)
                    wall = time.perf_counter() - began
                    figures[f"{phase}_rate" if phase == "ingest" else "end_to_end_rate"] = n / wall
                    if phase != "ingest":
                        # how much of a core each service got: a rate below what the same code reaches
                        # alone (bench/processors.py) with a small share means the machine, not the code
                        figures["e2e_wall_s"] = wall
                        figures["e2e_load_1m"] = os.getloadavg()[0]
                        for who in ("ingest", "processors"):
                            figures.pop(f"e2e_{who}_cpu_s", None)
                        for child in children:
                            who = "processors" if "-processors" in child.name else "ingest"
                            used = cpu_seconds(child.pid) - cpu_before[child.name]
                            figures[f"e2e_{who}_cpu_s"] = figures.get(f"e2e_{who}_cpu_s", 0.0) + used
                        # the whole budget: the servers and the publisher (this process while it
                        # published; its InfluxDB query that decides the end is no part of it)
                        for name, server in stack.children.items():
                            used = cpu_seconds(server.pid) - servers_before[name]
                            figures[f"e2e_{name}_cpu_s"] = used
                        figures["e2e_publisher_cpu_s"] = published_cpu
                        # what Kafka was given to write: the events, and the processors' changelog
                        for topic, prefix in (
                            ("events", names["events_topic"] + "-"),
                            ("changelog", names["processor_id"] + "-lines-changelog-"),
                        ):
                            figures[f"e2e_kafka_{topic}_bytes"] = sum(
                                disk_usage(d)
                                for d in stack.run_dir.glob("kafka/**/" + prefix + "*")
                                if d.is_dir()
                            )
                        if args.e2e_rounds > 1:
                            budget = sum(figures[f"e2e_{w}_cpu_s"] for w in CPU_BUDGET) / n
                            print(
                                f"{phase}: {n / wall:.0f} events/s, {1e6 * budget:.0f} us of CPU an event "
                                "("
                                + ", ".join(
                                    f"{w} {1e6 * figures[f'e2e_{w}_cpu_s'] / n:.0f}" for w in CPU_BUDGET
                                )
                                + ")",
                                flush=True,
                            )
                    for spy in spies:
                        spy.wait(60)
                finally:
                    for child in children:
                        child.stop()

    report(figures, args.hours, args.ingest)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "mqtt_hop", "hours": args.hours, **figures}, indent=1) + "\n")
    if args.profile:
        for raw in sorted(args.profile.glob("*.txt")):
            print(f"-- {raw.name}")
            print("\n".join(hotspots(raw)))


if __name__ == "__main__":
    main()
