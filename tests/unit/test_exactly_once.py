"""ExactlyOnce: which records a worker applies, skips or reads again, with fakes for the Kafka cases.

A small simulated partition stands in for Kafka: a worker reads it through a fake consumer that keeps
records fetched before a seek (as Faust's buffer does), applies records to per-line "states" stored with
checkpoints in a fake changelog, and may crash between any two steps. Every scenario must end with each
record applied exactly once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wipwatch.processors.exactly_once import (
    Decision,
    ExactlyOnce,
    checkpoint_key,
    encode_checkpoint,
    is_checkpoint_key,
)

pytestmark = pytest.mark.unit


def test_a_fresh_partition_starts_at_zero_and_applies_in_order() -> None:
    eo = ExactlyOnce({})
    eo.assigned([0])
    assert eo.unchecked() == [0]
    assert eo.start(0) == 0
    assert eo.unchecked() == []
    assert eo.admit(0, 0) == (Decision.APPLY, 0)
    assert eo.admit(0, 1) == (Decision.APPLY, 1)


def test_records_at_or_below_the_checkpoint_are_skipped() -> None:
    eo = ExactlyOnce({checkpoint_key(2): encode_checkpoint(9)})
    eo.assigned([2])
    assert eo.admit(2, 5) == (Decision.SKIP, 5)
    assert eo.admit(2, 6) == (Decision.SKIP, 6)
    assert eo.admit(2, 9) == (Decision.SEEK, 7)  # offsets are contiguous: 7 and 8 never came
    assert eo.admit(2, 7) == (Decision.SKIP, 7)
    assert eo.admit(2, 8) == (Decision.SKIP, 8)
    assert eo.admit(2, 9) == (Decision.SKIP, 9)
    assert eo.admit(2, 10) == (Decision.APPLY, 10)
    assert eo.admit(2, 10) == (Decision.SKIP, 10)  # delivered twice


def test_a_jump_to_the_committed_offset_after_the_first_records_is_a_gap() -> None:
    """Seen on Apache Kafka: Faust delivers 0..13 from the partition's start, then its seek to the
    committed offset 19 lands and 19 follows 13."""
    eo = ExactlyOnce({checkpoint_key(0): encode_checkpoint(9)})
    eo.assigned([0])
    for offset in range(14):
        assert eo.admit(0, offset)[0] is (Decision.SKIP if offset <= 9 else Decision.APPLY)
    assert eo.admit(0, 19) == (Decision.SEEK, 14)
    assert eo.admit(0, 20) == (Decision.SEEK, 14)
    assert eo.admit(0, 14) == (Decision.APPLY, 14)


def test_a_first_record_beyond_the_checkpoint_seeks_back_and_leftovers_seek_again() -> None:
    eo = ExactlyOnce({checkpoint_key(0): encode_checkpoint(33)})
    eo.assigned([0])
    assert eo.admit(0, 40) == (Decision.SEEK, 34)
    # records Faust fetched before the seek keep coming: each asks for the seek again
    assert eo.admit(0, 41) == (Decision.SEEK, 34)
    assert eo.admit(0, 34) == (Decision.APPLY, 34)
    assert eo.admit(0, 35) == (Decision.APPLY, 35)


def test_start_waits_for_exactly_the_checkpoint_successor() -> None:
    eo = ExactlyOnce({checkpoint_key(1): encode_checkpoint(4)})
    eo.assigned([1])
    assert eo.start(1) == 5
    assert eo.admit(1, 3) == (Decision.SKIP, 3)  # a leftover from an older committed position
    assert eo.admit(1, 7) == (Decision.SEEK, 5)  # a leftover beyond: the re-read has not begun
    assert eo.admit(1, 5) == (Decision.APPLY, 5)


def test_retention_moves_the_target_to_the_oldest_record_left() -> None:
    eo = ExactlyOnce({checkpoint_key(0): encode_checkpoint(10)})
    eo.assigned([0])
    assert eo.start(0) == 11
    assert eo.retarget(0, 50) == 50
    assert eo.admit(0, 50) == (Decision.APPLY, 50)
    assert eo.retarget(0, 60) is None  # no seek pending: nothing to move


def test_checkpoints_taken_are_the_highest_handled_offset_above_the_stored_one() -> None:
    table = {checkpoint_key(0): encode_checkpoint(7)}
    eo = ExactlyOnce(table)
    for p, o in [(0, 5), (0, 9), (0, 8), (3, 0)]:
        eo.handled(p, o)
    assert eo.take_checkpoints() == {0: 9, 3: 0}
    assert eo.take_checkpoints() == {}


def test_reassignment_checks_again_and_forgets_partitions_no_longer_owned() -> None:
    eo = ExactlyOnce({})
    eo.assigned([0, 1])
    eo.start(0)
    eo.assigned([1, 2])
    assert eo.unchecked() == [1, 2]
    assert eo.retarget(0, 5) is None  # a seek asked for before the reassignment is void


def test_keys_and_bad_partitions() -> None:
    assert is_checkpoint_key(checkpoint_key(3))
    assert not is_checkpoint_key(b"plant/line-1")
    with pytest.raises(ValueError, match="partition"):
        checkpoint_key(-1)


# ------------------------------------------------------------------ simulated crashes and rebalances


@dataclass
class World:
    """One partition carrying several lines, a changelog, a committed offset and a worker's buffer."""

    records: list[str]  # the line of each offset
    changelog: dict[bytes, bytes] = field(default_factory=dict)
    committed: int = 0
    applied: dict[str, list[int]] = field(default_factory=dict)  # what the stored states hold

    def state_offset(self, line: str) -> int:
        raw = self.changelog.get(line.encode())
        return int(raw) if raw is not None else -1


def run_worker(world: World, rng: random.Random, crash_after: int | None) -> bool:
    """One worker's life; False if it crashed. Faust commits ahead of the stored states on purpose."""
    table = dict(world.changelog)  # recovered from the changelog
    eo = ExactlyOnce(table)
    eo.assigned([0])
    position = world.committed
    buffer: list[int] = []  # fetched before a seek, still delivered afterwards
    if rng.random() < 0.3:  # Faust reads from the start before its seek to the committed offset lands
        buffer = list(range(min(rng.randint(0, 5), len(world.records))))
    elif rng.random() < 0.5:  # the eager start may come before or after the first records
        buffer = list(range(position, min(position + rng.randint(0, 3), len(world.records))))
        position = eo.start(0)
    steps = 0
    pending: dict[str, list[int]] = {}
    lines_offsets: dict[str, int] = {line: world.state_offset(line) for line in set(world.records)}

    def store(crash: bool) -> bool:
        """The end of a batch: states first, then the checkpoint; False if it crashed in between."""
        for line, offsets in pending.items():
            world.applied.setdefault(line, []).extend(offsets)
            world.changelog[line.encode()] = str(lines_offsets[line]).encode()
            if crash:
                return False
        pending.clear()
        for p, o in eo.take_checkpoints().items():
            world.changelog[checkpoint_key(p)] = encode_checkpoint(o)
        return True

    while True:
        idle = not buffer and position >= len(world.records)
        if eo.unchecked() and (idle or rng.random() < 0.2):  # the timer, at some point after recovery
            position = eo.start(0)
            continue
        if buffer:
            offset = buffer.pop(0)
        elif position < len(world.records):
            offset, position = position, position + 1
        else:
            return store(crash=False)
        decision, target = eo.admit(0, offset)
        if decision is Decision.SEEK:
            buffer = [o for o in buffer if o > offset]  # what was fetched after the trigger
            position = target
            continue
        if decision is Decision.APPLY:
            line = world.records[offset]
            if offset > lines_offsets[line]:  # LineEngine.offer's own skip
                lines_offsets[line] = offset
                pending.setdefault(line, []).append(offset)
        eo.handled(0, offset)
        steps += 1
        if rng.random() < 0.3:  # Faust commits whatever it has read, before or after our store
            world.committed = offset + 1
        crash = crash_after is not None and steps >= crash_after
        if (steps % 3 == 0 and not store(crash)) or crash:
            return False


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=40),
    seed=st.integers(0, 10_000),
    crashes=st.lists(st.integers(1, 20), max_size=4),
)
def test_any_crash_sequence_applies_every_record_exactly_once(
    lines: list[str], seed: int, crashes: list[int]
) -> None:
    world = World(lines)
    rng = random.Random(seed)
    for crash_after in crashes:
        run_worker(world, rng, crash_after)
    assert run_worker(world, rng, None)
    expected: dict[str, list[int]] = {}
    for offset, line in enumerate(lines):
        expected.setdefault(line, []).append(offset)
    assert world.applied == expected
