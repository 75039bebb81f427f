"""The processors' Kafka consumer: Faust's aiokafka consumer with a fetch wait short enough for live data.

Faust builds its worker's aiokafka consumer with ``fetch_max_wait_ms=1500`` and has no setting for it.
aiokafka keeps one fetch request in flight per broker and leaves out of it the partitions whose fetched
records are still being consumed, so a request can cover only partitions with nothing new (a partition no
line uses, a quiet line). The broker holds such a request for the whole wait, and the busy partitions'
new records wait with it: measured up to 1.6 s between ingest's send and the consumer, the largest share
of the live latency beyond the lateness (docs/architecture.md, "Where live latency goes"). A short wait
bounds that, for a few empty fetches a second on an idle topic.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

#: How long the broker may hold a fetch that finds no new record (aiokafka's own default is 500).
FETCH_MAX_WAIT_MS = 50


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads the wait from this attribute when the consumer starts (AIOKafkaConsumer.start);
        # tests/unit/test_processor_consumer.py checks that it still does
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class PromptApp(faust.App):
    """A Faust app whose worker consumer fetches with ``FETCH_MAX_WAIT_MS`` (Kafka brokers only)."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
