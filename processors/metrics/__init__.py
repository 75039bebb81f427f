"""Pure metric functions and small classes: no Faust, Kafka or I/O. Each names its definition."""

from wipwatch.processors.metrics.wip import DataQualityIssue, apply_movements, location_key

__all__ = ["DataQualityIssue", "apply_movements", "location_key"]
