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
