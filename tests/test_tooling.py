"""Lint, types and docs are part of the suite, so CI checks them with the same command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.require import require

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_clean() -> None:
    require(shutil.which("ruff"), "ruff is not installed (pip install -e '.[lint]')")
    paths = [p for p in ("hvballoon", "tests", "examples", "benchmarks", "backends", "ansible_collections") if (ROOT / p).exists()]
    r = _run("ruff", "check", *paths)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run("ruff", "format", "--check", "hvballoon", "examples")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow  # a cold cache takes several seconds
def test_mypy_strict_clean() -> None:
    require(shutil.which("mypy"), "mypy is not installed (pip install -e '.[lint]')")
    r = _run(sys.executable, "-m", "mypy")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_docs_build_strict(tmp_path: Path) -> None:
    require(shutil.which("mkdocs"), "mkdocs is not installed (pip install -e '.[docs]')")
    r = _run("mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "index.html").is_file()
