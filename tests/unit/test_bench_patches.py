"""The bench's patches still apply to the tree (bench/patches/): a figure in the docs names how to redo it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PATCHES = sorted((ROOT / "bench" / "patches").glob("*.patch"))


def test_there_are_patches() -> None:
    assert PATCHES, "bench/patches/ holds no patch: docs/architecture.md names engine-off.patch"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("patch", PATCHES, ids=[p.name for p in PATCHES])
def test_the_patch_applies_to_the_tree(patch: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (e.g. an unpacked source archive)")
    done = subprocess.run(
        ["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{patch.name} no longer applies: {done.stderr}"
