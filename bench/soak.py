"""Soak: a steady event rate for hours into Apache Kafka and one processor worker; memory and disk over time.

Events come from the SimPy model of ``examples/multi-line-site.yaml``, shift after shift with event times
running on, packed as ingest packs them and produced at a steady ``--rate`` (acks=all, idempotent). Every
``--every`` seconds one line: broker and worker RSS, the run directory's disk use, events produced and the
worker's progress (the events topic's committed lag is not used: the processors' own checkpoints are).
Retention is set small (``--retention-mb`` per partition) so that bounded disk shows within hours.

Not part of CI. Run: ``.venv/bin/python bench/soak.py --hours 2 --rate 2000``; writes
bench/results/soak.json (every sample) too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from wipwatch.events import Event, pack_by_line
from wipwatch.kafka import ensure_event_topics, send_line_record
from wipwatch.services import NativeStack, Ports, python_module_argv, spawn
from wipwatch.settings import REPO_ROOT, load_settings
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site

SITE_FILE = REPO_ROOT / "examples" / "multi-line-site.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "soak.json"
START = datetime(2026, 1, 5, 6, tzinfo=UTC)
SHIFT_H = 8.0


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


def disk_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_blocks * 512
    return total / 1024 / 1024


async def produce(bootstrap: str, topic: str, rate: float, stop: threading.Event, counter: list[int]) -> None:
    site = load_site(SITE_FILE)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    started = time.monotonic()
    shift = 0
    try:
        while not stop.is_set():
            events: list[Event] = []
            begin = START + timedelta(hours=SHIFT_H * shift)
            simulate_site(site, events.append, seed=shift + 1, duration=SHIFT_H * 3600, start=begin)
            for key, value in pack_by_line(events, 50):
                await send_line_record(producer, site, topic, key, value, 4)
                counter[0] += value.count(b'"id"')
                ahead = counter[0] / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
                if stop.is_set():
                    break
            shift += 1
        await producer.flush()
    finally:
        await producer.stop()


def disk_by_topic(data: Path) -> dict[str, float]:
    """MB on disk per topic (partition directories ``<topic>-<n>`` summed)."""
    found: dict[str, float] = {}
    for part in data.iterdir() if data.exists() else []:
        if part.is_dir() and "-" in part.name:
            topic = part.name.rsplit("-", 1)[0]
            found[topic] = round(found.get(topic, 0.0) + disk_mb(part), 1)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--retention-mb", type=int, default=64, help="events retention per partition")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="wipwatch-soak-") as tmp:
        run = Path(tmp)
        stack = NativeStack(run / "stack", Ports.free())
        with stack.running():
            env = {
                "WIPWATCH_SITE_FILE": str(SITE_FILE),
                "WIPWATCH_RUN_DIR": str(run / "worker"),
                "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
                "WIPWATCH_INFLUX_URL": stack.influx_url,
                "WIPWATCH_KAFKA_RETENTION_BYTES": str(args.retention_mb * 1024 * 1024),
            }
            settings = load_settings(**{k.removeprefix("WIPWATCH_").lower(): v for k, v in env.items()})
            asyncio.run(ensure_event_topics(settings))
            worker = spawn("processors", python_module_argv("process"), run / "logs", env)
            stop, counter = threading.Event(), [0]
            producer = threading.Thread(
                target=lambda: asyncio.run(
                    produce(stack.kafka_bootstrap, settings.events_topic, args.rate, stop, counter)
                )
            )
            producer.start()
            began = time.monotonic()
            try:
                while time.monotonic() - began < args.hours * 3600:
                    time.sleep(args.every)
                    if not worker.alive():
                        raise RuntimeError(f"worker died:\n{worker.log_tail()}")
                    sample = {
                        "minutes": round((time.monotonic() - began) / 60, 1),
                        "events": counter[0],
                        "kafka_rss_mb": round(rss_mb(stack.children["kafka"].pid), 1),
                        "worker_rss_mb": round(rss_mb(worker.pid), 1),
                        "kafka_disk_mb": round(disk_mb(run / "stack" / "kafka"), 1),
                        "influx_disk_mb": round(disk_mb(run / "stack" / "influxdb"), 1),
                    }
                    sample["topics_mb"] = disk_by_topic(run / "stack" / "kafka" / "data")  # type: ignore[assignment]
                    samples.append(sample)
                    print(" ".join(f"{k}: {v}" for k, v in sample.items()), flush=True)
            finally:
                stop.set()
                producer.join(60)
                worker.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rate": args.rate, "samples": samples}, indent=1))
    first, last = samples[0], samples[-1]
    for key in ("kafka_rss_mb", "worker_rss_mb", "kafka_disk_mb"):
        print(f"{key}: {last[key]} MB at the end, {first[key]} MB after the first sample")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
