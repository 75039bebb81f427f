"""Every error a user can cause, in one place.

Each says what went wrong, where (file and field path, topic, line number) and, where it helps, what to do.
The CLI prints ``str(error)`` on one line and exits non-zero; the traceback only with ``--debug``.
"""

from __future__ import annotations


class WipwatchError(Exception):
    """Base class of the errors wipwatch reports to a user."""


class SiteFileError(WipwatchError):
    """The site file cannot be read or does not describe a valid site."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class EventError(WipwatchError):
    """A message is not a valid v1 event; ``reason`` is what the dead-letter record carries."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ServiceError(WipwatchError):
    """A native server could not be started, or a server the user named cannot be reached."""


class SettingsError(WipwatchError):
    """A setting (environment variable or flag) has a value wipwatch cannot use."""


class RecordingError(WipwatchError):
    """A recording file cannot be read or written (missing, unknown format, not writable)."""
