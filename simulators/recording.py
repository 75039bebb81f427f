"""Simulated events to a JSON-lines file instead of MQTT (``wipwatch simulate --dry-run``).

Each line is what ``mosquitto_sub -F %j`` prints for the message the simulator would have published:
``tst`` (here the event time), ``topic``, ``qos``, ``retain``, ``payloadlen`` and ``payload`` (the v1
event JSON as a string), so the replay helper reads a dry run and a live recording alike.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import IO

import msgspec

from wipwatch.errors import WipwatchError
from wipwatch.events import Event, encode_event, topic_for


class _Line(msgspec.Struct):
    tst: str
    topic: str
    qos: int
    retain: int
    payloadlen: int
    payload: str


class JsonLinesSink:
    """An event sink (``emit``) that appends one mosquitto_sub-style JSON line per event."""

    def __init__(self, path: Path, qos: int = 1) -> None:
        self.path = path
        self.qos = qos
        self.written = 0
        self._encoder = msgspec.json.Encoder()
        try:
            self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()/__exit__
        except OSError as exc:
            raise WipwatchError(f"{path}: cannot write the dry-run events: {exc.strerror}") from None

    def __call__(self, event: Event) -> None:
        payload = encode_event(event)
        line = _Line(event.time.isoformat(), topic_for(event), self.qos, 0, len(payload), payload.decode())
        self._file.write(self._encoder.encode(line) + b"\n")
        self.written += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonLinesSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
