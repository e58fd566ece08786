"""The docs: every Python sample runs, and the generated pages match their generators.

A ```python block in docs/ is one of:

- a doctest (it has ``>>>`` lines): pytest collects it (``--doctest-glob='*.md'``);
- marked not runnable, with a reason, by an HTML comment on the line before the fence:
  ``<!-- not-run: needs a real vCenter -->``; a block that connects to a real hypervisor's URI
  (qemu:///system, esxi://, vcenter://, hyperv://…) counts as marked "needs a real hypervisor";
- anything else: executed here, in a fresh namespace, against the fake.
"""

from __future__ import annotations

import re
import runpy
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->")
REAL_URI = re.compile(r"""["'](qemu(\+\w+)?://|esxi://|vcenter://|hyperv://|qmp://)""")


def python_blocks() -> list[tuple[str, int, str, str | None]]:
    """(page, line, code, why-not-run) of every Python block that is not a doctest."""
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m or not m["lang"]:
                i += 1
                continue
            j = i + 1
            while j < len(lines) and not FENCE.match(lines[j]):
                j += 1
            code = "\n".join(line[len(m["indent"]) :] for line in lines[i + 1 : j])
            if m["lang"] in ("python", "py") and ">>>" not in code:
                marked = NOT_RUN.search(lines[i - 1]) if i else None
                why = (
                    marked["reason"]
                    if marked
                    else ("needs a real hypervisor" if REAL_URI.search(code) else None)
                )
                out.append((str(page.relative_to(ROOT)), i + 1, code, why))
            i = j + 1
    return out


BLOCKS = python_blocks()


@pytest.mark.parametrize(("page", "line", "code", "why"), BLOCKS, ids=[f"{b[0]}:{b[1]}" for b in BLOCKS])
def test_docs_python_sample_runs(page: str, line: int, code: str, why: str | None, tmp_path: Path) -> None:
    if why is not None:
        compile(code, f"{page}:{line}", "exec")  # not run, but it must at least be Python
        return
    script = tmp_path / "sample.py"
    script.write_text(code, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runpy.run_path(str(script), run_name="__docs_sample__")


def test_every_sample_is_a_doctest_runs_or_says_why_not() -> None:
    # the parametrized test above covers each; this one states the inventory
    assert all(why is None or why.strip() for *_, why in BLOCKS)


def test_capability_matrix_is_generated() -> None:
    gen = runpy.run_path(str(ROOT / "scripts" / "capabilities.py"))
    committed = (DOCS / "capabilities.md").read_text(encoding="utf-8")
    assert committed == gen["render"](), "regenerate with: python scripts/capabilities.py --write"


@pytest.mark.parametrize("kind", ["kvm", "esxi", "hyperv"])
def test_backend_pages_carry_their_kinds_rules(kind: str) -> None:
    from hvballoon.kinds import get_kind

    gen = runpy.run_path(str(ROOT / "scripts" / "capabilities.py"))
    page = gen["BACKEND_PAGES"][kind]
    committed = page.read_text(encoding="utf-8")
    assert committed == gen["render_page"](kind, committed), (
        "regenerate with: python scripts/capabilities.py --write"
    )
    for rule_id in get_kind(kind).rules:
        assert f"`{rule_id}`" in committed, rule_id


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    missing = sorted(p for p in pages if p not in nav)
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"
