"""Replay a recording over MQTT: original spacing divided by ``speed``, or as fast as the broker takes it.

Payloads go out unchanged, so event times (the payload ``time`` field) are those of the original shift and
the processors, which compute and stamp their points in event time, write the same series at any speed.
Pacing uses the times in the file (receive times; a dry run's event times); a recording without them
(the old dry-run format) is published back to back. Publishing is QoS 1 through
:class:`wipwatch.mqtt.MqttPublisher`, whose cap on unacknowledged messages is the back-pressure that keeps
``max`` from dropping anything.

Which site a recording is of, for ``up --replay``: :func:`survey` counts its events by the site, line and
location their topics name, and :func:`site_for_recording` picks the site file that describes most of
them, or refuses (docs/record-replay.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from wipwatch.errors import RecordingError
from wipwatch.events import ALERTS_TOPIC_ROOT, TOPIC_ROOT
from wipwatch.recorder.formats import RecordingReader, Skipped
from wipwatch.site import Site

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


# ---------------------------------------------------------------- which site a recording is of


@dataclass
class RecordingSurvey:
    """What a recording holds: event messages per (site, line, location), and messages on other topics.

    Event messages are those ingest takes: topics ``wipwatch/<site>/<line>/<location>/<kind>`` outside
    ``wipwatch/alerts``. Read from the topics alone (the payload must agree with its topic, or ingest
    dead-letters it anyway).
    """

    by_location: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    other: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.by_location.values())

    def site_ids(self) -> list[str]:
        """The site ids of the events, most frequent first."""
        per_site: Counter[str] = Counter()
        for (site_id, _line, _location), n in self.by_location.items():
            per_site[site_id] += n
        return [site_id for site_id, _n in per_site.most_common()]

    def known_to(self, site: Site) -> int:
        """Event messages whose site, line and location ``site`` describes."""
        return sum(
            n
            for (site_id, line, location), n in self.by_location.items()
            if site_id == site.site and site.has_location(line, location)
        )


def survey(reader: RecordingReader) -> RecordingSurvey:
    """Read the whole recording once and count its event messages by site, line and location.

    Raises:
        RecordingError: the file cannot be read or its format is unknown.
    """
    result = RecordingSurvey()
    for message in reader:
        parts = message.topic.split("/")
        if (
            len(parts) == 5
            and parts[0] == TOPIC_ROOT
            and not message.topic.startswith(ALERTS_TOPIC_ROOT + "/")
        ):
            result.by_location[(parts[1], parts[2], parts[3])] += 1
        else:
            result.other += 1
    result.skipped = list(reader.skipped)
    return result


@dataclass(frozen=True)
class SiteCandidate:
    """A site a recording may be of: where it comes from (for messages), the site, and whether it is a
    guess (a site file found lying around) rather than named by the user or by the recording."""

    source: str
    site: Site
    guess: bool = False


def site_for_recording(
    recording: Path, contents: RecordingSurvey, candidates: Sequence[SiteCandidate]
) -> SiteCandidate:
    """The first candidate describing the most events of the recording, if it describes most of them.

    Candidates come in order of preference (the user's choice alone; else the recording's own header,
    then guesses). Two different guessed sites that describe the events equally well are ambiguous.

    Raises:
        RecordingError: the recording holds no event, no candidate describes most of its events, or the
            best guesses are ambiguous.
    """
    total = contents.events
    if total == 0:
        raise RecordingError(f"{recording}: no wipwatch event message in the recording; nothing to replay")
    if not candidates:
        raise RecordingError(f"{recording}: no site file to replay it with; pass --site")
    known = [contents.known_to(c.site) for c in candidates]
    best = max(range(len(candidates)), key=lambda i: (known[i], -i))
    ids = ", ".join(repr(i) for i in contents.site_ids()[:5])
    chosen = candidates[best]
    if known[best] * 2 <= total:
        what = f"{chosen.source} (site {chosen.site.site!r})"
        if len(candidates) == 1:
            raise RecordingError(
                f"{recording}: its events are for site {ids}, but {what} knows only {known[best]} of "
                f"{total}; pass --site with the recording's site file"
            )
        raise RecordingError(
            f"{recording}: its events are for site {ids}; none of {len(candidates)} site files tried "
            f"describes them (best {what}: {known[best]} of {total}); pass --site with its site file"
        )
    rivals = [
        c.source
        for c, n in zip(candidates, known, strict=True)
        if c.guess and chosen.guess and n == known[best] and c.site != chosen.site
    ]
    if rivals:
        names = ", ".join([chosen.source, *rivals])
        raise RecordingError(
            f"{recording}: its events fit {len(rivals) + 1} different site files equally ({names}); "
            "pass --site with the one it was recorded with"
        )
    log.info(
        "replay site source=%s site=%s known=%d events=%d",
        chosen.source,
        chosen.site.site,
        known[best],
        total,
    )
    return chosen
