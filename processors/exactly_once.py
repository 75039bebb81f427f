"""Which Kafka records the processors apply, which they skip, and where they must read again.

The processors' delivery guarantee (docs/metrics.md, "Exactly once") rests on two facts stored in the
changelog of the ``lines`` table, per partition of the events topic:

- each line's state carries the offset of the last record applied to it (``LineState.offset``);
- after the states of a batch are stored, a **checkpoint** record (``@checkpoint/<partition>``) says that
  every record of that partition up to its offset has its effect in the stored states.

Both go to the same changelog partition from one producer, so the log keeps their order: whoever finds a
checkpoint after a crash also finds every state written before it. Faust's own committed offset is only
a hint: after every assignment, once the table is recovered, each partition is read again from
``checkpoint + 1`` (:meth:`ExactlyOnce.start`), so records committed whose effect was never stored (a crash
between Faust's commit and our states, a rebalance mid-batch) are applied after all. Should a record
arrive before that, one beyond ``checkpoint + 1`` sends the consumer back too (:meth:`ExactlyOnce.admit`).
Records at or below the checkpoint are skipped without decoding; records above it that a line has already
applied are skipped by the line (``LineEngine.offer``). This holds for any number of lines per partition.
The events topic must hold no transaction markers (ingest's producer is idempotent, not transactional):
a seek waits for the record at its target offset.

This class holds no Faust, Kafka or I/O: the agent asks it what to do with each record and does it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Table keys of the checkpoints; a site id can never start with '@' (wipwatch/site.py identifiers).
CHECKPOINT_PREFIX = b"@checkpoint/"


class Decision(enum.Enum):
    APPLY = "apply"
    SKIP = "skip"
    SEEK = "seek"


@dataclass
class _Resume:
    """A seek in progress: wait for the record at ``target``; ``trigger`` is the record that caused it."""

    target: int
    trigger: int


def checkpoint_key(partition: int) -> bytes:
    if partition < 0:
        raise ValueError(f"partition must be >= 0, got {partition}")
    return CHECKPOINT_PREFIX + str(partition).encode()


def is_checkpoint_key(key: bytes) -> bool:
    return key.startswith(CHECKPOINT_PREFIX)


def encode_checkpoint(offset: int) -> bytes:
    return str(offset).encode()


class ExactlyOnce:
    """Per-partition progress of one worker, over the checkpoints in ``table`` (the ``lines`` table data).

    Args:
        table: read access to the recovered table: ``checkpoint_key(p)`` -> the checkpoint's offset.
    """

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self._table = table
        self._next: dict[int, int] = {}  # the offset expected next, per partition read since assignment
        self._pending_check: set[int] = set()
        self._resume: dict[int, _Resume] = {}
        self._handled: dict[int, int] = {}

    def checkpoint(self, partition: int) -> int:
        """The offset up to which ``partition``'s records are stored, -1 if none is."""
        raw = self._table.get(checkpoint_key(partition))
        return int(raw) if raw is not None else -1

    def assigned(self, partitions: Iterable[int]) -> None:
        """A (re)assignment of exactly ``partitions``: set each one's reading position again.

        Faust revokes every partition and seeks each assigned one to its committed offset, so whatever
        this worker knew of positions and pending seeks is void, for kept partitions too.
        """
        self._pending_check = set(partitions)
        self._next.clear()
        self._resume.clear()

    def unchecked(self) -> list[int]:
        """Assigned partitions whose reading position was not yet set (:meth:`start`) since assignment."""
        return sorted(self._pending_check)

    def start(self, partition: int) -> int:
        """Set ``partition``'s reading position once after an assignment: the offset to seek to.

        That is the first offset this worker has not handled since the assignment (``checkpoint + 1`` if
        it has handled none): Faust may have delivered a partition's first records and then jumped to
        its committed offset at the end of the partition, where no later record would reveal the gap.
        """
        self._pending_check.discard(partition)
        resume = self._resume.get(partition)
        if resume is not None:
            return resume.target
        target = self._next.get(partition, self.checkpoint(partition) + 1)
        self._resume[partition] = _Resume(target, target)
        return target

    def admit(self, partition: int, offset: int) -> tuple[Decision, int]:
        """What to do with the record at ``offset``: apply it, skip it, or seek to the returned offset.

        Offsets of the events topic are contiguous, so a record beyond the next expected one is a gap
        (seen: Faust delivers records from the start of a partition, then jumps to the committed offset
        once its seek lands) and sends the consumer back. After a SEEK, records fetched before it keep
        arriving (Faust buffers them): every such leftover, recognised by an offset above the one that
        caused the seek, asks for the seek again until a record from the target on arrives.
        """
        resume = self._resume.get(partition)
        if resume is not None:
            if offset > resume.trigger:
                return Decision.SEEK, resume.target
            if offset < resume.target:
                return Decision.SKIP, offset
            del self._resume[partition]
        else:
            expected = self._next.get(partition)
            if expected is None:  # the first record since the assignment
                expected = self.checkpoint(partition) + 1
            if offset > expected:
                self._resume[partition] = _Resume(expected, offset)
                return Decision.SEEK, expected
            if offset < expected and partition in self._next:
                return Decision.SKIP, offset  # delivered again; this worker has it already
        self._next[partition] = offset + 1
        if offset <= self.checkpoint(partition):
            return Decision.SKIP, offset
        return Decision.APPLY, offset

    def retarget(self, partition: int, earliest: int) -> int | None:
        """Move a pending seek up to ``earliest`` (retention deleted what lies before); the new target.

        None when no seek is pending any more: a reassignment came while the caller waited for Kafka.
        """
        resume = self._resume.get(partition)
        if resume is None:
            return None
        resume.target = max(resume.target, earliest)
        resume.trigger = max(resume.trigger, resume.target)
        return resume.target

    def handled(self, partition: int, offset: int) -> None:
        """The record at ``offset`` is applied or rejected for good; its effect is stored with the batch."""
        if offset > self._handled.get(partition, -1):
            self._handled[partition] = offset

    def take_checkpoints(self) -> dict[int, int]:
        """Partition -> offset for the checkpoints to store after this batch's states; forgets them."""
        taken, self._handled = self._handled, {}
        return {p: o for p, o in taken.items() if o > self.checkpoint(p)}
