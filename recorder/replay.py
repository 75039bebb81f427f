"""Replay a recording over MQTT: original spacing divided by ``speed``, or as fast as the broker takes it.

Payloads go out unchanged, so event times (the payload ``time`` field) are those of the original shift and
the processors, which compute in event time, reach the same numbers at any speed. Pacing uses the receive
times in the file; a recording without them (the simulator's ``--dry-run``) is published back to back.
Publishing is QoS 1 through :class:`wipwatch.mqtt.MqttPublisher`, whose cap on unacknowledged messages
is the back-pressure that keeps ``max`` from dropping anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from wipwatch.errors import RecordingError
from wipwatch.recorder.formats import RecordingReader, Skipped

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
#: Called with (messages published, bytes of the file read, file size) a few times a second.
Progress = Callable[[int, int, int], None]
_PROGRESS_EVERY: Final = 0.1
#: Below this lead over the schedule a message is sent at once: sleeping for less is all overhead.
_MIN_SLEEP: Final = 0.002


@dataclass(frozen=True)
class TimePoint:
    """A bound of the replay window: unix seconds, or seconds after the recording's first message."""

    seconds: float
    relative: bool = False

    def resolve(self, first: float) -> float:
        return first + self.seconds if self.relative else self.seconds


@dataclass
class ReplayResult:
    """What a replay did: messages published and left out, passes over the file, wall time taken."""

    published: int = 0
    outside_window: int = 0
    passes: int = 0
    seconds: float = 0.0
    format: str | None = None
    skipped: list[Skipped] = field(default_factory=list)


def replay(
    reader: RecordingReader,
    publish: Publish,
    speed: float | None = None,
    start: TimePoint | None = None,
    end: TimePoint | None = None,
    loop: bool = False,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] | None = None,
) -> ReplayResult:
    """Publish the messages of ``reader``; ``speed`` ``None`` means as fast as ``publish`` returns.

    Args:
        speed: recorded seconds per wall-clock second (1 = real time, 60 = an hour a minute).
        start, end: replay only messages received in ``[start, end)``.
        loop: start over at the end until ``stop`` is set.
        clock, sleep: the time source and the wait (default: monotonic time, ``stop.wait``); tests
            pass a fake pair to check the schedule without waiting.

    Raises:
        RecordingError: the file cannot be read, or a window is asked of a recording without times.
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be > 0 or None, got {speed}")
    stop = stop or threading.Event()
    sleep = sleep or stop.wait
    result = ReplayResult()
    began = time.monotonic()
    size = reader.size()
    last_report = 0.0
    while not stop.is_set():
        result.passes += 1
        first: float | None = None
        lo = hi = None
        anchor = 0.0
        wall0 = clock()
        published_in_pass = 0
        for message in reader:
            if stop.is_set():
                break
            t = message.time
            if t is None:
                if start is not None or end is not None:
                    raise RecordingError(
                        f"{reader.path}: {reader.format} recording has no receive times; "
                        "--from/--to need a recording made by wipwatch record, mqtt-recorder or mosquitto_sub"
                    )
            else:
                if first is None:
                    first = t
                    lo = start.resolve(first) if start else None
                    hi = end.resolve(first) if end else None
                if (lo is not None and t < lo) or (hi is not None and t >= hi):
                    result.outside_window += 1
                    continue
                if speed is not None:
                    if published_in_pass == 0:
                        anchor, wall0 = t, clock()
                    lead = wall0 + (t - anchor) / speed - clock()
                    if lead > _MIN_SLEEP:
                        sleep(lead)
            publish(message.topic, message.payload)
            published_in_pass += 1
            result.published += 1
            if progress is not None and time.monotonic() - last_report > _PROGRESS_EVERY:
                last_report = time.monotonic()
                progress(result.published, reader.position(), size)
        result.format = reader.format
        result.skipped = list(reader.skipped)
        if not loop or published_in_pass == 0:
            break
    if progress is not None:
        progress(result.published, size, size)
    result.seconds = time.monotonic() - began
    log.info(
        "replay done published=%d outside_window=%d skipped=%d passes=%d seconds=%.1f",
        result.published,
        result.outside_window,
        len(result.skipped),
        result.passes,
        result.seconds,
    )
    return result
