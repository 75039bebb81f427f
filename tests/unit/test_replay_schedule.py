"""Replay scheduling without a broker: spacing divided by speed, the window, loops, untimed recordings."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from wipwatch.errors import RecordingError
from wipwatch.recorder.formats import Message, RecordingWriter, read_recording
from wipwatch.recorder.replay import TimePoint, replay

pytestmark = pytest.mark.unit

T0 = 1_764_050_400.0
# receive times 0 s, 10 s, 10 s, 70 s, 3600 s after the first message
OFFSETS = [0.0, 10.0, 10.0, 70.0, 3600.0]


class FakeTime:
    """A clock that only moves when the replay sleeps, and a publisher noting when each message went."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sent: list[tuple[float, str]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def publish(self, topic: str, _payload: bytes) -> None:
        self.sent.append((self.now, topic))


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "shift.gz"
    with RecordingWriter(path) as writer:
        for i, offset in enumerate(OFFSETS):
            writer.write(Message(f"t/{i}", b"{}", 1, False, T0 + offset))
    return path


@pytest.mark.parametrize(("speed", "expected"), [(1.0, OFFSETS), (60.0, [0, 1 / 6, 1 / 6, 70 / 60, 60.0])])
def test_spacing_is_divided_by_speed(recording: Path, speed: float, expected: list[float]) -> None:
    fake = FakeTime()
    result = replay(read_recording(recording), fake.publish, speed, clock=fake.clock, sleep=fake.sleep)
    assert result.published == 5
    assert [topic for _, topic in fake.sent] == [f"t/{i}" for i in range(5)]
    assert [when - 100.0 for when, _ in fake.sent] == pytest.approx(expected)


def test_max_speed_never_sleeps(recording: Path) -> None:
    fake = FakeTime()
    replay(read_recording(recording), fake.publish, None, clock=fake.clock, sleep=fake.sleep)
    assert [when for when, _ in fake.sent] == [100.0] * 5


def test_window_by_offset_keeps_from_inclusive_to_exclusive_and_starts_at_once(recording: Path) -> None:
    fake = FakeTime()
    result = replay(
        read_recording(recording),
        fake.publish,
        1.0,
        start=TimePoint(10.0, relative=True),
        end=TimePoint(3600.0, relative=True),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    assert [topic for _, topic in fake.sent] == ["t/1", "t/2", "t/3"]
    assert [when - 100.0 for when, _ in fake.sent] == pytest.approx([0.0, 0.0, 60.0])
    assert result.outside_window == 2


def test_window_by_absolute_time(recording: Path) -> None:
    fake = FakeTime()
    replay(read_recording(recording), fake.publish, None, start=TimePoint(T0 + 70), clock=fake.clock)
    assert [topic for _, topic in fake.sent] == ["t/3", "t/4"]


def test_loop_starts_over_until_stopped(recording: Path) -> None:
    stop = threading.Event()
    sent: list[str] = []

    def publish(topic: str, _payload: bytes) -> None:
        sent.append(topic)
        if len(sent) == 12:
            stop.set()

    result = replay(read_recording(recording), publish, None, loop=True, stop=stop)
    assert sent[:10] == [f"t/{i}" for i in range(5)] * 2
    assert result.passes == 3
    assert result.published == 12


def test_dry_run_recording_goes_back_to_back_and_refuses_a_window(tmp_path: Path) -> None:
    path = tmp_path / "dry.jsonl"
    path.write_text("".join(f'{{"topic": "t/{i}", "qos": 1, "payload": "{{}}"}}\n' for i in range(3)))
    fake = FakeTime()
    result = replay(read_recording(path), fake.publish, 1.0, clock=fake.clock, sleep=fake.sleep)
    assert result.published == 3
    assert [when for when, _ in fake.sent] == [100.0] * 3
    with pytest.raises(RecordingError, match="no receive times"):
        replay(read_recording(path), fake.publish, 1.0, start=TimePoint(5, relative=True))


def test_skipped_lines_are_reported_in_the_result(tmp_path: Path) -> None:
    path = tmp_path / "sub.jsonl"
    good = '{"tst": "2025-11-25T06:00:00.000000Z+0000", "topic": "a", "qos": 1, "retain": 0, "payload": "p"}'
    path.write_text(f"{good}\nnot json\n{good}\n{good[:20]}")
    result = replay(read_recording(path), lambda _t, _p: None, None)
    assert result.published == 2
    assert [s.line for s in result.skipped] == [2, 4]
