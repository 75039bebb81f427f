"""Fixtures shared by every test layer: real servers on free ports, stopped by PID even on failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wipwatch.services import NativeStack, Ports
from wipwatch.settings import REPO_ROOT, Settings, load_settings

EXAMPLE_SITE = REPO_ROOT / "examples" / "lean-line.yaml"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[NativeStack]:
    """mosquitto, the Kafka-protocol broker and influxd, fresh for one test."""
    native = NativeStack(tmp_path / "stack", Ports.free())
    with native.running():
        yield native


def stack_settings(stack: NativeStack, run_dir: Path, **overrides: object) -> Settings:
    return load_settings(
        run_dir=run_dir,
        mqtt_port=stack.mqtt_port,
        kafka_bootstrap=stack.kafka_bootstrap,
        influx_url=stack.influx_url,
        site_file=overrides.pop("site_file", EXAMPLE_SITE),
        **overrides,
    )


def stack_env(stack: NativeStack, run_dir: Path, site_file: Path = EXAMPLE_SITE) -> dict[str, str]:
    """Environment for child processes (``wipwatch ingest``/``process``) pointed at ``stack``."""
    return {
        "WIPWATCH_SITE_FILE": str(site_file),
        "WIPWATCH_RUN_DIR": str(run_dir),
        "WIPWATCH_MQTT_PORT": str(stack.mqtt_port),
        "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "WIPWATCH_INFLUX_URL": stack.influx_url,
    }
