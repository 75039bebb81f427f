"""Record MQTT traffic to a file and replay it at any speed, event times preserved (docs/record-replay.md)."""

from wipwatch.recorder.formats import (
    WRITE_FORMATS,
    Message,
    RecordingReader,
    RecordingWriter,
    Skipped,
    read_recording,
)
from wipwatch.recorder.record import Recorder
from wipwatch.recorder.replay import ReplayResult, TimePoint, replay

__all__ = [
    "WRITE_FORMATS",
    "Message",
    "Recorder",
    "RecordingReader",
    "RecordingWriter",
    "ReplayResult",
    "Skipped",
    "TimePoint",
    "read_recording",
    "replay",
]
