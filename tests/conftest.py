"""Fixtures shared by every test layer: real servers on free ports, stopped by PID even on failure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from wipwatch.services import NativeStack, Ports, free_port, start_kafka
from wipwatch.settings import REPO_ROOT, Settings, load_settings

EXAMPLE_SITE = REPO_ROOT / "examples" / "lean-line.yaml"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Apache Kafka broker for the whole session; each test's stack uses topics of its own."""
    child = start_kafka(tmp_path_factory.mktemp("kafka"), free_port())
    try:
        yield child.address
    finally:
        child.stop()


@pytest.fixture
def stack(tmp_path: Path, kafka_broker: str) -> Iterator[NativeStack]:
    """mosquitto and influxd fresh for one test, on the session's Kafka (topics unique to the test)."""
    native = NativeStack(tmp_path / "stack", Ports.free(), kafka_external=kafka_broker)
    with native.running():
        yield native


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[NativeStack]:
    """mosquitto, Apache Kafka and influxd all fresh, for tests that stop or kill the broker."""
    native = NativeStack(tmp_path / "own-stack", Ports.free())
    with native.running():
        yield native


def namespace(stack: NativeStack) -> str:
    """A name unique to ``stack``: topics and consumer groups of tests sharing one broker never meet."""
    return hashlib.sha1(str(stack.run_dir).encode()).hexdigest()[:10]


def stack_topics(stack: NativeStack) -> dict[str, str]:
    ns = namespace(stack)
    return {
        "events_topic": f"wipwatch-events-{ns}",
        "deadletter_topic": f"wipwatch-deadletter-{ns}",
        "processor_id": f"wipwatch-processors-{ns}",
    }


def stack_settings(stack: NativeStack, run_dir: Path, **overrides: object) -> Settings:
    return load_settings(
        run_dir=run_dir,
        mqtt_port=stack.mqtt_port,
        kafka_bootstrap=stack.kafka_bootstrap,
        influx_url=stack.influx_url,
        site_file=overrides.pop("site_file", EXAMPLE_SITE),
        **{**stack_topics(stack), **overrides},
    )


def stack_env(stack: NativeStack, run_dir: Path, site_file: Path = EXAMPLE_SITE) -> dict[str, str]:
    """Environment for child processes (``wipwatch ingest``/``process``) pointed at ``stack``."""
    return {
        "WIPWATCH_SITE_FILE": str(site_file),
        "WIPWATCH_RUN_DIR": str(run_dir),
        "WIPWATCH_MQTT_PORT": str(stack.mqtt_port),
        "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "WIPWATCH_INFLUX_URL": stack.influx_url,
        **{f"WIPWATCH_{name.upper()}": value for name, value in stack_topics(stack).items()},
    }
