"""The processors' Kafka consumer fetches with a short wait (processors/consumer.py).

Faust builds aiokafka's consumer with a 1.5 s fetch wait; this checks that the worker's consumer is built
with ours instead, and that aiokafka still hands that attribute to its fetcher when it starts. Nothing
connects: aiokafka's consumer reaches the broker only once started.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from wipwatch.processors.app import create_app
from wipwatch.processors.consumer import FETCH_MAX_WAIT_MS
from wipwatch.settings import load_settings

pytestmark = pytest.mark.unit


def test_the_worker_consumer_fetches_with_the_short_wait(tmp_path: Path) -> None:
    async def build() -> int:
        settings = load_settings(run_dir=tmp_path, kafka_bootstrap="127.0.0.1:9")
        app = create_app(settings, writer=object())  # type: ignore[arg-type]
        consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(build()) == FETCH_MAX_WAIT_MS < 1500
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
