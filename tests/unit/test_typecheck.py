"""Type checking sees the packages as installed: a wrong call inside a service fails `make check`.

The services live in top-level folders that install as ``wipwatch.ingest``, ``wipwatch.processors``, ...
(pyproject's ``package-dir``). ``scripts/typecheck-tree`` lays that out for mypy; these tests run mypy the
way ``scripts/check`` does, on the real tree and on a copy with a probe module planted in a service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MYPY = Path(sys.executable).parent / "mypy"

#: Wrong calls from inside the processors service: to its own package, to a sibling metric module and to
#: the core. Each line's error code is what mypy must report there.
PROBE = '''\
"""Probe: wrong argument types across the project's own imports."""

from wipwatch.events import parse_line_key
from wipwatch.processors.exactly_once import checkpoint_key
from wipwatch.processors.metrics.station_state import StationClock
from wipwatch.site import load_site

parse_line_key("site/line")  # str for bytes
checkpoint_key("p0")  # str for int
StationClock().set_state("ten", "idle")  # str for float
load_site(42)  # int for str | Path
reveal_type(StationClock().totals(1.0))
'''


def _tree(dest: Path) -> Path:
    subprocess.run([ROOT / "scripts" / "typecheck-tree", dest], check=True)
    return dest


def _mypy(tree: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(tree)}
    return subprocess.run(
        [MYPY, "--config-file", ROOT / "pyproject.toml", "--cache-dir", cwd / "cache", "-p", "wipwatch"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )


def _probe_lines(output: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for line in output.splitlines():
        if "_probe.py:" in line:
            number = int(line.split("_probe.py:", 1)[1].split(":", 1)[0])
            found[number] = found.get(number, "") + line
    return found


def test_the_real_tree_type_checks(tmp_path: Path) -> None:
    result = _mypy(_tree(tmp_path / "tree"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_a_wrong_call_inside_a_service_fails(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    # the service folder becomes a folder of links, so the probe lands in the copy, not in the repository
    processors = tree / "wipwatch" / "processors"
    processors.unlink()
    shutil.copytree(ROOT / "processors", processors, copy_function=os.symlink, ignore=_no_caches)
    (processors / "_probe.py").write_text(PROBE)

    result = _mypy(tree, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    errors = _probe_lines(result.stdout)
    assert '"parse_line_key" has incompatible type "str"; expected "bytes"' in errors[8]
    assert '"checkpoint_key" has incompatible type "str"; expected "int"' in errors[9]
    assert '"set_state" of "StationClock" has incompatible type "str"; expected "float"' in errors[10]
    assert '"load_site" has incompatible type "int"' in errors[11]
    # the return type crossed the import whole, not as Any
    assert 'Revealed type is "dict[str, float]"' in errors[12]
    # the probe is the only thing wrong
    assert all("_probe.py:" in line for line in result.stdout.splitlines() if ": error:" in line)


def _no_caches(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__"]
