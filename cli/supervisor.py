"""Keeps ``wipwatch up``'s children running: a crashed child is restarted with back-off, the others go on.

A child that crashes more than ``max_crashes`` times within ``window_s`` seconds is taken as
unrecoverable: ``poll`` raises ``SupervisorGaveUp`` and the caller stops everything and exits non-zero.
A child marked ``finite`` (a replay) may finish: exit code 0 ends it without a restart. Every start,
crash and restart is logged; ``status_file`` (JSON) says which pid each child has and how often it was
restarted, for ``up``'s users and tests.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wipwatch.errors import ServiceError
from wipwatch.services import ChildProcess, spawn

log = logging.getLogger(__name__)


class SupervisorGaveUp(ServiceError):
    """A child keeps crashing: restarting it does not help."""


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child. ``argv`` may be a function, called at every (re)start."""

    name: str
    argv: Sequence[str] | Callable[[], Sequence[str]]
    env: dict[str, str] = field(default_factory=dict)
    finite: bool = False

    def command(self) -> list[str]:
        return list(self.argv() if callable(self.argv) else self.argv)


@dataclass
class _Supervised:
    spec: ChildSpec
    child: ChildProcess | None
    crashes: deque[float] = field(default_factory=deque)
    restarts: int = 0
    restart_at: float | None = None


class Supervisor:
    """Starts children, restarts crashed ones with exponential back-off, gives up on crash loops."""

    def __init__(
        self,
        log_dir: Path,
        *,
        max_crashes: int = 5,
        window_s: float = 60.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        status_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_crashes < 1:
            raise ValueError(f"max_crashes must be >= 1, got {max_crashes}")
        for name, value in (
            ("window_s", window_s),
            ("backoff_s", backoff_s),
            ("max_backoff_s", max_backoff_s),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.log_dir = log_dir
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.status_file = status_file
        self._clock = clock
        self._children: dict[str, _Supervised] = {}

    @property
    def children(self) -> dict[str, ChildProcess]:
        """The running (or restarting) children's current processes, by name."""
        return {name: s.child for name, s in self._children.items() if s.child is not None}

    def restarts(self, name: str) -> int:
        return self._children[name].restarts

    def start(self, spec: ChildSpec) -> ChildProcess:
        """Start ``spec`` now and supervise it from then on.

        Raises:
            ValueError: a child of that name is already supervised.
            ServiceError: the program cannot be started.
        """
        if spec.name in self._children:
            raise ValueError(f"a child named {spec.name!r} is already supervised")
        child = spawn(spec.name, spec.command(), self.log_dir, spec.env)
        self._children[spec.name] = _Supervised(spec, child)
        self._write_status()
        return child

    def poll(self) -> list[str]:
        """Look after every child once; return what happened, one line each (for the console).

        Raises:
            SupervisorGaveUp: a child crashed more than ``max_crashes`` times within ``window_s``.
        """
        now = self._clock()
        notes: list[str] = []
        for name, sup in list(self._children.items()):
            if sup.child is None:
                if sup.restart_at is not None and now >= sup.restart_at:
                    sup.child = spawn(name, sup.spec.command(), self.log_dir, sup.spec.env)
                    sup.restarts += 1
                    sup.restart_at = None
                    log.info("restarted name=%s pid=%d restarts=%d", name, sup.child.pid, sup.restarts)
                    notes.append(f"{name} restarted (pid {sup.child.pid}, restart {sup.restarts})")
                    self._write_status()
                continue
            if sup.child.alive():
                continue
            code = sup.child.process.returncode
            if code == 0 and sup.spec.finite:
                log.info("finished name=%s", name)
                notes.append(f"{name} finished")
                del self._children[name]
                self._write_status()
                continue
            sup.crashes.append(now)
            while sup.crashes and sup.crashes[0] < now - self.window_s:
                sup.crashes.popleft()
            if len(sup.crashes) > self.max_crashes:
                raise SupervisorGaveUp(
                    f"{name} exited {len(sup.crashes)} times within {self.window_s:g} s (last code {code}); "
                    f"gave up. Log {sup.child.log_path}:\n{sup.child.log_tail()}"
                )
            delay = min(self.backoff_s * 2 ** (len(sup.crashes) - 1), self.max_backoff_s)
            log.warning(
                "crashed name=%s pid=%d code=%s restart_in_s=%.1f log=%s",
                name,
                sup.child.pid,
                code,
                delay,
                sup.child.log_path,
            )
            notes.append(f"{name} exited (code {code}); restarting in {delay:g} s; log {sup.child.log_path}")
            sup.child = None
            sup.restart_at = now + delay
            self._write_status()
        return notes

    def stop_all(self) -> None:
        """Stop every child, last started first. Idempotent."""
        for sup in reversed(list(self._children.values())):
            if sup.child is not None:
                sup.child.stop()
        self._write_status()

    def _write_status(self) -> None:
        if self.status_file is None:
            return
        status = {
            name: {"pid": s.child.pid if s.child and s.child.alive() else None, "restarts": s.restarts}
            for name, s in self._children.items()
        }
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(self.status_file)
