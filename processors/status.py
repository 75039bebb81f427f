"""A processors worker's status file: the events-topic partitions it holds and the lines it owns.

Written to ``<run dir>/status/processors-<processor id>-<pid>.json`` (``wipwatch.status``) at every
rebalance and whenever the worker takes on a line, so tests and operators see how the lines are split
among workers without reading logs. Fields besides ``pid`` and ``time``: ``partitions`` (sorted) and
``lines`` (sorted line ids whose state this worker loaded since its latest assignment).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from wipwatch.status import write_status


def status_name(processor_id: str, pid: int) -> str:
    """The status file name of the worker with process id ``pid`` in group ``processor_id``."""
    return f"processors-{processor_id}-{pid}"


class WorkerStatus:
    """The worker's partitions and lines, written out on each change."""

    def __init__(self, run_dir: Path, processor_id: str) -> None:
        self.run_dir = Path(run_dir)
        self.name = status_name(processor_id, os.getpid())
        self.partitions: list[int] = []
        self.lines: dict[str, int] = {}  # line id -> its partition

    def assigned(self, partitions: Iterable[int]) -> None:
        """A rebalance gave the worker ``partitions``: lines on other partitions are no longer its own."""
        self.partitions = sorted(set(partitions))
        self.lines = {line: p for line, p in self.lines.items() if p in self.partitions}
        self.write()

    def owns(self, line_id: str, partition: int) -> None:
        """The worker loaded ``line_id``'s state from ``partition``."""
        if self.lines.get(line_id) != partition:
            self.lines[line_id] = partition
            self.write()

    def write(self) -> Path:
        """Rewrite the status file."""
        return write_status(
            self.run_dir, self.name, {"partitions": self.partitions, "lines": sorted(self.lines)}
        )
