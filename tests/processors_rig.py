"""A test rig for the stream processors: events straight to the Kafka topic, workers as real child processes.

Events are produced the way ingest produces them (one line per record, packed), so these tests exercise
the processors alone; ingest has its own tests and the e2e tests run the whole chain.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.conftest import namespace, stack_env, stack_topics
from tests.polling import eventually
from wipwatch.events import Event, pack_by_line
from wipwatch.influx import InfluxTarget, last_values, query
from wipwatch.kafka import ensure_topics, send_line_records
from wipwatch.processors.status import status_name
from wipwatch.services import ChildProcess, NativeStack, python_module_argv, spawn
from wipwatch.settings import load_settings
from wipwatch.site import Site
from wipwatch.status import read_status

START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def packed(events: Iterable[Event], per_record: int) -> list[tuple[bytes, bytes]]:
    return pack_by_line(events, per_record)


def produce(
    stack: NativeStack, records: Sequence[tuple[bytes, bytes]], site: Site, partitions: int = 4
) -> None:
    """Send ``records`` to ``stack``'s events topic on the partitions ingest would choose."""
    bootstrap, topic = stack.kafka_bootstrap, stack_topics(stack)["events_topic"]

    async def run() -> None:
        await ensure_topics(bootstrap, [topic], partitions)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=1 << 24
        )
        await producer.start()
        try:
            await send_line_records(producer, site, topic, records, partitions)
        finally:
            await producer.stop()

    asyncio.run(run())


@dataclass
class Rig:
    """Processor workers for one site against one stack; each worker group writes to its own database."""

    stack: NativeStack
    tmp: Path
    site_file: Path
    workers: list[ChildProcess] = field(default_factory=list)
    #: worker name -> (its run directory, its processor id)
    homes: dict[str, tuple[Path, str]] = field(default_factory=dict)

    def start_worker(
        self, name: str, group: str = "wipwatch-processors", database: str = "wipwatch", **env: str
    ) -> ChildProcess:
        run_dir = self.tmp / "run" / name
        processor_id = f"{group}-{namespace(self.stack)}"
        self.homes[name] = (run_dir, processor_id)
        environment = {
            **stack_env(self.stack, run_dir, self.site_file),
            "WIPWATCH_PROCESSOR_ID": processor_id,
            "WIPWATCH_INFLUX_DB": database,
            **{f"WIPWATCH_{k.upper()}": v for k, v in env.items()},
        }
        child = spawn(name, python_module_argv("process"), self.tmp / "logs", environment)
        self.workers.append(child)
        return child

    def status(self, worker: ChildProcess) -> dict[str, Any]:
        """The worker's status file (processors/status.py): its partitions and lines; {} before the first."""
        run_dir, processor_id = self.homes[worker.name]
        return read_status(run_dir, status_name(processor_id, worker.pid)) or {}

    def target(self, database: str = "wipwatch") -> InfluxTarget:
        settings = load_settings(influx_url=self.stack.influx_url, influx_db=database, influx_version="1")
        return InfluxTarget.from_settings(settings, detect=False)

    def create_database(self, database: str) -> None:
        query(self.target(database), f'CREATE DATABASE "{database}"')

    def metrics(
        self, database: str = "wipwatch"
    ) -> dict[str, dict[tuple[tuple[str, str], ...], dict[str, Any]]]:
        return last_values(self.target(database))

    def wip(self, database: str = "wipwatch") -> dict[str, int]:
        found = self.metrics(database).get("wip", {})
        return {
            f"{dict(tags)['line']}/{dict(tags)['location']}": int(f["parts"])
            for tags, f in found.items()
            if "parts" in f  # a read racing a write can see a series before its fields
        }

    def wait_wip(self, expected: dict[str, int], database: str = "wipwatch", timeout: float = 120) -> None:
        def probe() -> dict[str, int]:
            for child in self.workers:
                assert child.alive() or child.process.returncode in (0, -9, -15), self.logs()
            return self.wip(database)

        try:
            eventually(probe, lambda got: got == expected, timeout, f"WIP in {database}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.log_tail(40)}" for c in self.workers)

    def stop(self) -> None:
        for child in self.workers:
            child.stop()


def by_location(found: dict[tuple[tuple[str, str], ...], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``last_values`` of one measurement keyed by ``line/location``."""
    return {
        f"{dict(tags).get('line')}/{dict(tags).get('location', '')}": fields for tags, fields in found.items()
    }


def assert_same_metrics(a: dict[str, Any], b: dict[str, Any], rel: float = 1e-9) -> None:
    """Two databases hold the same last value of every field of every series (floats within ``rel``)."""
    assert a.keys() == b.keys(), f"measurements differ: {sorted(a)} vs {sorted(b)}"
    for measurement in a:
        assert a[measurement].keys() == b[measurement].keys(), f"{measurement}: series differ"
        for tags, fields in a[measurement].items():
            other = b[measurement][tags]
            assert fields.keys() == other.keys(), f"{measurement} {tags}: fields differ"
            for name, value in fields.items():
                if isinstance(value, float) or isinstance(other[name], float):
                    assert math.isclose(value, other[name], rel_tol=rel, abs_tol=1e-6), (
                        f"{measurement} {dict(tags)} {name}: {value} != {other[name]}"
                    )
                else:
                    assert value == other[name], (
                        f"{measurement} {dict(tags)} {name}: {value} != {other[name]}"
                    )
