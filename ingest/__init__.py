"""MQTT -> Kafka bridge: validate each part-movement message, key it by line, dead-letter the rest."""

from wipwatch.ingest.bridge import (
    IngestBridge,
    IngestStats,
    deadletter_record,
    read_status,
    status_path,
    wait_subscribed,
)

__all__ = [
    "IngestBridge",
    "IngestStats",
    "deadletter_record",
    "read_status",
    "status_path",
    "wait_subscribed",
]
