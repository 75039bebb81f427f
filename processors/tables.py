"""Writing Faust tables once per batch instead of once per event.

Faust sends one changelog record per table assignment and needs the current event to pick its partition,
which a batch from ``take_events`` does not set. ``BatchWrites`` stages the last value of each key with the
partition of the event that changed it, then applies them to the table's store and sends one changelog
record per key: the changelog stays co-partitioned with the source topic, so recovery after a restart
rebuilds exactly the keys of the partitions a worker owns.
"""

from __future__ import annotations

from typing import Any


class BatchWrites:
    """Staged writes to one Faust table, flushed together."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._staged: dict[Any, tuple[int, Any]] = {}

    def set(self, partition: int, key: Any, value: Any) -> None:
        self._staged[key] = (partition, value)

    def flush(self) -> int:
        """Apply and send the staged writes; returns how many changelog records were sent."""
        store = self.table.data
        for key, (partition, value) in self._staged.items():
            store[key] = value
            self.table.send_changelog(partition, key, value)
        sent = len(self._staged)
        self._staged.clear()
        return sent
