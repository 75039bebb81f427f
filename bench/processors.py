"""Processor throughput from a pre-filled Kafka topic through the Faust app into InfluxDB, and peak memory.

Figures, all in one run on fresh native servers (Apache Kafka, influxd):
- ``raw_rate``: a plain aiokafka consume-and-decode loop over the topic (the baseline: Kafka and msgspec
  alone, no metrics, no state, no InfluxDB);
- ``processor_rate``: one ``wipwatch process`` worker over the same topic, from the worker's "Ready" until
  InfluxDB shows every location's final WIP equal to the simulator's ground truth (all metrics, state to
  the changelog, points awaited in InfluxDB); ``ratio`` = processor / raw;
- ``peak_rss_100k``: peak RSS of a worker that holds 100,000 parts in WIP at one location (goal ≤ 300 MB).

Events come from the SimPy model of the three-line site, packed as ingest packs them (one line per record,
``WIPWATCH_INGEST_EVENTS_PER_RECORD`` events at most). Goal on the 2-core machine: processor ≥ 20,000
events/s and ≥ 10 % of the raw loop.

Run: ``.venv/bin/python bench/processors.py [--hours 24]``. Writes bench/results/processors.json too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from wipwatch.events import Event, PartIn, decode_record, pack_by_line
from wipwatch.influx import InfluxTarget, query
from wipwatch.kafka import ensure_topics, send_line_records
from wipwatch.services import ChildProcess, NativeStack, Ports, python_module_argv, spawn
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site
from wipwatch.views import wip_snapshot

SITE_FILE = REPO_ROOT / "bench" / "sites" / "three-lines.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "processors.json"
PER_RECORD = 500
PARTITIONS = 4
START = datetime(2026, 11, 25, 6, tzinfo=UTC)


def shift_records(hours: float) -> tuple[list[tuple[bytes, bytes]], int, dict[str, int]]:
    """Simulate ``hours`` of the three-line site; records packed per line, in event order."""
    site = load_site(SITE_FILE)
    events: list[Event] = []
    truth = simulate_site(site, events.append, seed=5, duration=hours * 3600, start=START)
    records = pack_by_line(events, PER_RECORD)
    wip = {
        f"{line.id}/{loc.id}": truth.wip.get(f"{line.id}/{loc.id}", 0) for line, loc in site.iter_locations()
    }
    return records, len(events), wip


def stuck_records(parts: int) -> list[tuple[bytes, bytes]]:
    """``parts`` arrivals at one buffer and no departure: 100,000 parts in WIP for the memory figure."""
    site = load_site(SITE_FILE)
    line = site.lines[0]
    buffer = next(loc.id for loc in line.locations if loc.kind.value == "buffer")
    arrivals = (
        PartIn(
            v=1,
            id=f"stuck-{i}",
            time=START + timedelta(seconds=i * 0.01),
            site=site.site,
            line=line.id,
            location=buffer,
            part=f"stuck-part-{i}",
        )
        for i in range(parts)
    )
    return pack_by_line(arrivals, PER_RECORD)


async def fill(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce ``records`` on the partitions ingest would choose."""
    site = load_site(SITE_FILE)
    await ensure_topics(bootstrap, [topic], PARTITIONS)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, max_request_size=1 << 24
    )
    await producer.start()
    try:
        await send_line_records(producer, site, topic, records, PARTITIONS)
    finally:
        await producer.stop()


async def raw_loop(bootstrap: str, topic: str, expected: int) -> float:
    """Seconds to consume and decode every event of ``topic`` with a plain aiokafka consumer."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        started = time.perf_counter()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    seen += len(decode_record(record.value))
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def run_worker(
    stack: NativeStack, run_dir: Path, topic: str, app_id: str, until: Callable[[], bool], database: str
) -> tuple[float, int]:
    """Start one worker; seconds from its "Ready" until ``until()``, and its peak RSS in bytes."""
    env = {
        "WIPWATCH_SITE_FILE": str(SITE_FILE),
        "WIPWATCH_RUN_DIR": str(run_dir / app_id),
        "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "WIPWATCH_KAFKA_PARTITIONS": str(PARTITIONS),
        "WIPWATCH_INFLUX_URL": stack.influx_url,
        "WIPWATCH_EVENTS_TOPIC": topic,
        "WIPWATCH_PROCESSOR_ID": app_id,
        "WIPWATCH_INFLUX_DB": database,
    }
    child = spawn(app_id, python_module_argv("process"), run_dir / "logs", env=env)
    try:
        ready = _wait_for_log(child, "Ready", 120)
        while not until():
            if not child.alive():
                raise RuntimeError(f"worker exited:\n{child.log_tail()}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - ready
        return elapsed, _peak_rss(child.pid)
    finally:
        child.stop()


def _wait_for_log(child: ChildProcess, text: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in child.log_path.read_text(errors="replace"):
            return time.perf_counter()
        if not child.alive():
            raise RuntimeError(f"worker exited:\n{child.log_tail()}")
        time.sleep(0.005)
    raise RuntimeError(f"worker not ready in {timeout}s:\n{child.log_tail()}")


def _peak_rss(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) * 1024
    return 0


def wip_matches(stack: NativeStack, expected: dict[str, int]) -> Callable[[], bool]:
    settings = load_settings(site_file=SITE_FILE, influx_url=stack.influx_url)

    def check() -> bool:
        got = {f"{r['line']}/{r['location']}": r["wip"] for r in wip_snapshot(settings)["locations"]}
        return got == expected

    return check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours of the three-line site")
    parser.add_argument("--stuck", type=int, default=100_000, help="parts held in WIP for the memory figure")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    records, n_events, wip = shift_records(args.hours)
    with tempfile.TemporaryDirectory(prefix="wipwatch-bench-") as tmp:
        run_dir = Path(tmp)
        stack = NativeStack(run_dir / "servers", Ports.free())
        with stack.running():
            asyncio.run(fill(stack.kafka_bootstrap, "bench-events", records))
            raw_s = asyncio.run(raw_loop(stack.kafka_bootstrap, "bench-events", n_events))
            proc_s, rss = run_worker(
                stack, run_dir, "bench-events", "bench-proc", wip_matches(stack, wip), "wipwatch"
            )

            stuck = stuck_records(args.stuck)
            asyncio.run(fill(stack.kafka_bootstrap, "bench-stuck", stuck))
            site = load_site(SITE_FILE)
            first_buffer = next(loc.id for loc in site.lines[0].locations if loc.kind.value == "buffer")
            settings = load_settings(site_file=SITE_FILE, influx_url=stack.influx_url, influx_db="stuck")
            query(InfluxTarget.from_settings(settings), 'CREATE DATABASE "stuck"')

            def held() -> bool:
                snapshot = wip_snapshot(settings)["locations"]
                return any(r["location"] == first_buffer and r["wip"] == args.stuck for r in snapshot)

            stuck_s, stuck_rss = run_worker(stack, run_dir, "bench-stuck", "bench-stuck", held, "stuck")

    raw_rate = n_events / raw_s
    proc_rate = n_events / proc_s
    figures = {
        "events": n_events,
        "records": len(records),
        "raw_rate": raw_rate,
        "processor_rate": proc_rate,
        "ratio": proc_rate / raw_rate,
        "peak_rss_mb": rss / 2**20,
        "stuck_parts": args.stuck,
        "stuck_seconds": stuck_s,
        "peak_rss_100k_mb": stuck_rss / 2**20,
    }
    print(f"events: {n_events} in {len(records)} records ({args.hours:g} h of {SITE_FILE.name})")
    print(f"raw_rate: {raw_rate:,.0f} events/s (aiokafka consume + decode; baseline)")
    print(
        f"processor_rate: {proc_rate:,.0f} events/s (Faust app into InfluxDB; "
        f"ratio {proc_rate / raw_rate:.3f}; goal >= 20,000 and >= 0.10)"
    )
    print(f"peak_rss: {rss / 2**20:.1f} MB (worker, {args.hours:g} h shift)")
    print(
        f"peak_rss_100k: {stuck_rss / 2**20:.1f} MB "
        f"({args.stuck:,} parts in WIP, took {stuck_s:.1f} s; goal <= 300 MB)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"time": time.time(), **figures}, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
