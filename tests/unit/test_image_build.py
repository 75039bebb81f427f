"""The image builds: the package installs from exactly the files the Dockerfile copies.

No Docker engine runs here, so the build context is reproduced by hand: the repository's files minus
``.dockerignore``, copied the way the Dockerfile's ``COPY`` lines say, then ``pip wheel`` and
``pip install --target`` on that copy, then every module imported from the install. A folder the
Dockerfile forgets, a file ``.dockerignore`` drops, package data left out of the wheel or a setuptools
warning fails here instead of in ``docker build``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from wipwatch.settings import REPO_ROOT

pytestmark = [pytest.mark.unit, pytest.mark.slow]

#: What the image must carry besides Python modules (relative to the installed ``wipwatch`` package).
PACKAGE_DATA = (
    "examples/lean-line.yaml",
    "dashboards/board/static/index.html",
    "dashboards/board/static/board.js",
    "dashboards/provisioning/dashboards/wipwatch.yaml",
    "dashboards/provisioning/dashboards/json/wipwatch-shift-review.json",
    "dashboards/provisioning/datasources/wipwatch.yaml",
    "dashboards/schema/dashboard.schema.json",
)


def dockerfile_copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each ``COPY`` instruction, after line continuations are joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    copies = []
    workdir = PurePosixPath("/")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "WORKDIR":
            workdir = workdir / rest.strip()
        elif instruction.upper() in ("COPY", "ADD"):
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            assert not any(a.startswith("--from") for a in shlex.split(rest)), "multi-stage COPY --from"
            *sources, dest = args
            copies.append((sources, str(workdir / dest)))
    return copies


def _dockerignore_patterns(root: Path) -> list[tuple[bool, str]]:
    """(exclude?, pattern) in file order; a leading ``!`` re-includes (Docker's last-match-wins rule)."""
    path = root / ".dockerignore"
    patterns = []
    if path.exists():
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
            patterns.append((not negate, pattern))
    return patterns


def _matches(pattern: str, rel: str) -> bool:
    """Docker's rule: Go ``filepath.Match`` per path, ``**`` spans folders; a folder takes its files."""
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    parts = rel.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1))


def build_context(root: Path) -> list[str]:
    """Relative paths of the files ``docker build`` sends: everything under ``root`` minus .dockerignore."""
    patterns = _dockerignore_patterns(root)
    has_negations = any(not exclude for exclude, _ in patterns)

    def excluded(rel: str) -> bool:
        verdict = False
        for exclude, pattern in patterns:
            if _matches(pattern, rel):
                verdict = exclude
        return verdict

    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if not has_negations:  # nothing below an excluded folder can come back: skip it (.venv, .git)
            dirnames[:] = [d for d in dirnames if not excluded(prefix + d)]
        files += [prefix + f for f in filenames if not excluded(prefix + f)]
    return sorted(files)


def assemble_image_tree(root: Path, dockerfile: Path, image_root: Path) -> None:
    """Copy the build context into ``image_root`` as the Dockerfile's COPY lines place it."""
    context = build_context(root)
    for sources, dest in dockerfile_copies(dockerfile):
        target = image_root / dest.lstrip("/")
        for source in sources:
            src = os.path.normpath(source)
            chosen = [
                f
                for f in context
                if src == "." or f == src or f.startswith(src + "/") or fnmatch.fnmatch(f, src)
            ]
            assert chosen, f"COPY {source}: nothing in the build context matches"
            for rel in chosen:
                if src == "." or rel.startswith(src + "/"):
                    inside = rel if src == "." else os.path.relpath(rel, src)
                    out = target / inside
                elif dest.endswith("/") or len(sources) > 1:
                    out = target / Path(rel).name
                else:
                    out = target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, out)


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _install_dir(dockerfile: Path) -> str:
    """The folder the Dockerfile runs ``pip install`` on (``.`` means its WORKDIR)."""
    workdir = PurePosixPath("/")
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["WORKDIR"]:
            workdir = workdir / words[1]
        if words[:1] == ["RUN"] and "pip" in words and "install" in words:
            target = next(w for w in words[words.index("install") + 1 :] if not w.startswith("-"))
            return str(workdir / target).rstrip("&")
    raise AssertionError("the Dockerfile runs no `pip install`")


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    context = build_context(REPO_ROOT)
    for forbidden in (".env", "secrets/", ".venv/", ".git/", ".wipwatch/"):
        assert not any(f == forbidden or f.startswith(forbidden) for f in context), forbidden
    for needed in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "cli/main.py",
        "recorder/replay.py",
        "examples/lean-line.yaml",
    ):
        assert needed in context, needed


def test_package_builds_installs_and_imports_from_the_files_the_dockerfile_copies(tmp_path: Path) -> None:
    dockerfile = REPO_ROOT / "Dockerfile"
    image = tmp_path / "image"
    assemble_image_tree(REPO_ROOT, dockerfile, image)
    source = image / _install_dir(dockerfile).lstrip("/")
    wheels = tmp_path / "wheels"
    # the venv's setuptools (dev extra) stands in for the isolated build env the image's pip creates
    built = _pip(
        "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source), cwd=tmp_path
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    warnings = [
        line for line in (built.stdout + built.stderr).splitlines() if re.search(r"\w*Warning\b", line)
    ]
    assert warnings == [], "a fresh build must print no setuptools warning:\n" + "\n".join(warnings)
    (wheel,) = wheels.glob("wipwatch-*.whl")
    site = tmp_path / "site"
    installed = _pip("install", "--no-deps", "--target", str(site), str(wheel), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-4000:]

    package = site / "wipwatch"
    missing = [rel for rel in PACKAGE_DATA if not (package / rel).is_file()]
    assert missing == [], f"package data not installed: {missing}"
    modules = sorted(
        ".".join(p.relative_to(site).with_suffix("").parts).removesuffix(".__init__")
        for p in package.rglob("*.py")
        if p.name != "__main__.py"  # importing it runs the CLI
    )
    expected = {
        "wipwatch.cli.main",
        "wipwatch.recorder.replay",
        "wipwatch.ingest.bridge",
        "wipwatch.processors.app",
    }
    assert expected <= set(modules)
    probe = (
        "import importlib, json, sys\n"
        f"site = {str(site)!r}\n"
        "from wipwatch.settings import DEFAULT_SITE_FILE\n"
        "outside = []\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    if not str(getattr(module, '__file__', '') or '').startswith(site):\n"
        "        outside.append(name)\n"
        "print(json.dumps({'outside': outside, 'site_file': str(DEFAULT_SITE_FILE),\n"
        "                  'exists': DEFAULT_SITE_FILE.is_file()}))\n"
    )
    # PYTHONPATH puts the install before the checkout's editable finder; the venv supplies the dependencies
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["outside"] == [], f"imported from outside the install: {report['outside']}"
    assert report["exists"] and report["site_file"].startswith(str(site)), report


#: The Dockerfile before issue #13: every package folder listed by hand, and `recorder/` forgotten.
_LISTED_FOLDERS_DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY wipwatch wipwatch
COPY ingest ingest
COPY processors processors
COPY dashboards dashboards
COPY simulators simulators
COPY examples examples
RUN pip install --no-cache-dir .
"""


def test_a_dockerfile_that_forgets_a_package_folder_fails_here(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(_LISTED_FOLDERS_DOCKERFILE)
    image = tmp_path / "image"
    assemble_image_tree(REPO_ROOT, dockerfile, image)
    forgotten = {"recorder", "cli"}  # recorder/ then; cli/ came later, and that list did not follow
    assert not any((image / "app" / folder).exists() for folder in forgotten)
    source = image / _install_dir(dockerfile).lstrip("/")
    built = _pip(
        "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "w"), str(source), cwd=tmp_path
    )
    named = re.search(r"package directory '(\w+)' does not exist", built.stdout + built.stderr)
    assert built.returncode != 0 and named is not None and named.group(1) in forgotten, built.stderr[-2000:]
