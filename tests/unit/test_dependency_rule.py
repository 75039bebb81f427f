"""Dependencies point one way (docs/architecture.md, "Folders"), checked on the import statements.

Rooms, from pyproject's ``package-dir``: the core (``wipwatch/``), each service (``ingest/``,
``processors/``, ``dashboards/``, ``simulators/``, ``recorder/``) and the composition root (``cli/``,
``wipwatch.cli``). The core imports no service and not the CLI; a service imports the core and itself,
never another service or the CLI; the CLI may import everything. ``wipwatch/__main__.py`` (``python -m
wipwatch``) is the CLI's entry point and counts as the CLI. Every import statement counts, also the ones
inside functions or under ``TYPE_CHECKING``, and relative imports are resolved.
"""

from __future__ import annotations

import ast
import shutil
import tomllib
from pathlib import Path

import pytest

from wipwatch.settings import REPO_ROOT

pytestmark = pytest.mark.unit

CORE = "wipwatch"
CLI = "wipwatch.cli"
#: Entry points of the core that run the CLI; nothing imports them.
CLI_ENTRY_POINTS = ("wipwatch/__main__.py",)


def rooms(root: Path) -> dict[str, Path]:
    """Top-level package (``wipwatch``, ``wipwatch.cli``, ``wipwatch.ingest``, ...) -> its folder."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items() if name.count(".") <= 1}


def room_of(module: str, services: set[str]) -> str | None:
    """The room a module name belongs to; None outside the project."""
    if module != CORE and not module.startswith(CORE + "."):
        return None
    top = ".".join(module.split(".")[:2])
    if top == CLI or top in services:
        return top
    return CORE


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module name) of every import in the file; ``from a import b`` yields ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                package = parts if is_package else parts[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def violations(root: Path) -> list[str]:
    """Every import statement that crosses the rule, as ``file:line: room imports module`` (the first
    module of the statement that crosses)."""
    packages = rooms(root)
    services = {name for name in packages if name not in (CORE, CLI)}
    nested = {folder.resolve() for name, folder in packages.items() if name != CORE}
    found: dict[tuple[str, int], str] = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            if package == CORE and any(parent.resolve() in nested for parent in path.parents):
                continue  # a service folder inside the core's folder would be listed on its own
            rel = path.relative_to(root).as_posix()
            parts = path.relative_to(folder).with_suffix("").parts
            module = ".".join([package, *parts]).removesuffix(".__init__")
            own = CLI if rel in CLI_ENTRY_POINTS else package
            for line, name in imported_modules(path, module):
                target = room_of(name, services)
                if target is None or target == own or own == CLI:
                    continue
                if target == CORE:
                    continue  # everyone may import the core
                found.setdefault((rel, line), f"{rel}:{line}: {own} imports {name}")
    return sorted(found.values())


def test_the_tree_keeps_the_rule() -> None:
    assert violations(REPO_ROOT) == []


def test_every_service_and_the_cli_are_rooms() -> None:
    found = rooms(REPO_ROOT)
    assert {CORE, CLI, "wipwatch.ingest", "wipwatch.processors", "wipwatch.recorder"} <= set(found)
    assert all(folder.is_dir() for folder in found.values()), found


def test_planted_imports_across_rooms_are_found(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    files = {
        # core -> service, inside a function; core -> CLI
        "wipwatch/views.py": "def f():\n    from wipwatch.processors.metrics import wip\n",
        "wipwatch/site.py": "from wipwatch.cli.options import parse_speed\n",
        # the entry point may run the CLI
        "wipwatch/__main__.py": "from wipwatch.cli.main import main\n",
        # service -> service, three spellings; service -> CLI
        "simulators/observation.py": "from wipwatch import recorder\n",
        "dashboards/board/snapshot.py": "from ...processors.metrics import benchmarking\n",
        "ingest/bridge.py": "import wipwatch.recorder.formats\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from wipwatch.cli import stack\n",
        # allowed: a service -> the core and itself; the CLI -> anything
        "processors/app.py": "from wipwatch.events import Event\nfrom .metrics import wip\n"
        "from wipwatch.processors import points\n",
        "cli/stack.py": "from wipwatch.ingest import bridge\nfrom wipwatch.recorder import replay\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert violations(tmp_path) == [
        "dashboards/board/snapshot.py:1: wipwatch.dashboards imports wipwatch.processors.metrics",
        "ingest/bridge.py:1: wipwatch.ingest imports wipwatch.recorder.formats",
        "ingest/bridge.py:4: wipwatch.ingest imports wipwatch.cli",
        "simulators/observation.py:1: wipwatch.simulators imports wipwatch.recorder",
        "wipwatch/site.py:1: wipwatch imports wipwatch.cli.options",
        "wipwatch/views.py:2: wipwatch imports wipwatch.processors.metrics",
    ]
