"""Status files: what a running process says about itself in ``<run dir>/status/<name>.json``.

Read by ``wipwatch up``, the tests and operators instead of log text. Each file is rewritten whole and
atomically (a temporary file renamed over the old one), so a reader never sees half of one, and carries
the writer's ``pid`` and the ``time`` it was written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wipwatch.services import ChildProcess, wait_until


def status_file(run_dir: Path, name: str) -> Path:
    """The status file called ``name`` in ``run_dir``."""
    return Path(run_dir) / "status" / f"{name}.json"


def write_status(run_dir: Path, name: str, fields: Mapping[str, Any]) -> Path:
    """Replace the status file ``name`` with ``fields`` plus ``pid`` and ``time``; returns its path."""
    path = status_file(run_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), **fields}))
    tmp.replace(path)
    return path


def read_status(run_dir: Path, name: str) -> dict[str, Any] | None:
    """The status file's contents; None while it does not exist (or is not JSON)."""
    try:
        data = json.loads(status_file(run_dir, name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def wait_subscribed(child: ChildProcess, run_dir: Path, name: str, timeout: float = 60.0) -> None:
    """Wait until the process ``child`` reports ``subscribed`` in its status file ``name`` (ingest, the
    recorder): whoever starts a subscriber starts its producers only after this, because MQTT keeps
    nothing for a session that does not exist yet.

    Raises:
        ServiceError: the process exited or did not subscribe within ``timeout`` seconds.
    """

    def subscribed() -> bool:
        status = read_status(run_dir, name)
        return bool(status and status.get("pid") == child.pid and status.get("subscribed"))

    wait_until(child, subscribed, timeout)
