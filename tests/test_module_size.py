"""No module in ``hvballoon/`` (the backends included, ``hvballoon/backends/``) over 800 lines: past
that, split it by concern."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 800


def _modules() -> list[Path]:
    return sorted(
        p
        for p in (ROOT / "hvballoon").rglob("*.py")
        if "__pycache__" not in p.parts and "build" not in p.relative_to(ROOT).parts
    )


def test_no_module_is_over_800_lines() -> None:
    modules = _modules()
    assert len(modules) > 40 and ROOT / "hvballoon" / "session.py" in modules
    assert ROOT / "hvballoon" / "backends" / "esxi" / "backend.py" in modules
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text("utf-8").splitlines()) for p in modules}
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"
