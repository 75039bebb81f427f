"""Every error a user can cause, in one place.

Each says what went wrong, where (file and field path, topic, line number) and, where it helps, what to do.
The CLI prints ``str(error)`` on one line and exits non-zero; the traceback only with ``--debug``.
"""

from __future__ import annotations

from enum import StrEnum


class WipwatchError(Exception):
    """Base class of the errors wipwatch reports to a user."""


class SiteFileError(WipwatchError):
    """The site file cannot be read or does not describe a valid site."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class Rejection(StrEnum):
    """Why a message was rejected: a fixed set, so counters keyed by it stay bounded (docs/events.md)."""

    TOPIC = "topic"
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"
    SCHEMA = "schema"
    DUPLICATE_KEY = "duplicate_key"
    OUT_OF_RANGE = "out_of_range"
    AHEAD = "ahead"
    IDENTITY = "identity"
    UNKNOWN_SITE = "unknown_site"
    UNKNOWN_LOCATION = "unknown_location"
    INTERNAL = "internal"


class EventError(WipwatchError):
    """A message is not a valid v1 event; ``reason`` is what the dead-letter record carries.

    ``kind`` is the reason's class (for counters); ``reason`` the full text naming the field.
    """

    def __init__(self, reason: str, kind: Rejection = Rejection.SCHEMA) -> None:
        self.reason = reason
        self.kind = kind
        super().__init__(reason)


class ServiceError(WipwatchError):
    """A native server could not be started, or a server the user named cannot be reached."""


class SettingsError(WipwatchError):
    """A setting (environment variable or flag) has a value wipwatch cannot use."""


class RecordingError(WipwatchError):
    """A recording file cannot be read or written (missing, unknown format, not writable)."""
