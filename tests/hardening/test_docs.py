"""The docs: every Python sample runs, and the generated pages match their generators.

A ```python block in docs/ is one of:

- a doctest (it has ``>>>`` lines): pytest collects it (``--doctest-glob='*.md'``);
- marked not runnable, with a reason, by an HTML comment on the line before the fence:
  ``<!-- not-run: needs a real vCenter -->``; a block that connects to a real hypervisor's URI
  (qemu:///system, esxi://, vcenter://, hyperv://…) counts as marked "needs a real hypervisor";
- anything else: executed here, in a fresh namespace, against the fake.

A ```console block's ``$ hvballoon …`` commands (in docs/ and the README) run here too, in
order, in one fresh directory per block (``/tmp/`` in a command stands for it), through the
checkout's ``python -m hvballoon.cli`` under bash: what the block shows under a command is what
it must print (standard output and error together; ``…`` stands for any text within a line, a
line of its own for any lines), and a command shown with no output must succeed. Not run, with
the reason the test states: a command on a real hypervisor's URI, one that reads a file of the
reader's (``-i hosts.txt``, ``--settings``, ``< password.txt``), one that runs until stopped
(``exporter``, ``--serve``, ``watch`` without ``--count``), and every command of a block
marked ``<!-- not-run: reason -->``.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.support.require import require

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->")
REAL_URI = re.compile(r"""["'](qemu(\+\w+)?://|esxi://|vcenter://|hyperv://|qmp://)""")


def fenced_blocks(pages: Iterable[Path]) -> Iterator[tuple[Path, list[str], int, str, list[str]]]:
    """(page, its lines, the fence's index, the language, the block's lines without the fence's
    indent) of every fenced block with a language in ``pages``."""
    for page in pages:
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
            yield page, lines, i, m["lang"], [line[len(m["indent"]) :] for line in lines[i + 1 : j]]
            i = j + 1


def python_blocks() -> list[tuple[str, int, str, str | None]]:
    """(page, line, code, why-not-run) of every Python block that is not a doctest."""
    out = []
    for page, lines, i, lang, block in fenced_blocks(sorted(DOCS.rglob("*.md"))):
        code = "\n".join(block)
        if lang in ("python", "py") and ">>>" not in code:
            marked = NOT_RUN.search(lines[i - 1]) if i else None
            why = (
                marked["reason"] if marked else ("needs a real hypervisor" if REAL_URI.search(code) else None)
            )
            out.append((str(page.relative_to(ROOT)), i + 1, code, why))
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


CONSOLE_PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
#: What keeps a console command from running here, and why.
CONSOLE_NOT_RUN = (
    (re.compile(r"(qemu(\+\w+)?|esxi|vcenter|hyperv|qmp|test)://"), "needs a real hypervisor"),
    (re.compile(r"\s(-i|--inventory|--settings|--check-settings)\s|\s<\s"), "reads a file of the reader's"),
    (
        re.compile(r"^hvballoon (exporter|autoballoon .*--serve)\b|^hvballoon watch (?!.*--count)"),
        "runs until stopped",
    ),
)


def console_blocks() -> list[tuple[str, int, list[tuple[str, list[str]]], str | None]]:
    """(page, line, [(command, the output shown under it)], why-not-run) of every console block
    with a ``$ hvballoon`` command."""
    out = []
    for page, lines, i, lang, block in fenced_blocks(CONSOLE_PAGES):
        if lang != "console":
            continue
        steps: list[tuple[str, list[str]]] = []
        for line in block:
            if line.startswith("$ "):
                steps.append((line[2:].strip(), []))
            elif steps and steps[-1][0].endswith("\\"):
                steps[-1] = (steps[-1][0][:-1] + " " + line.strip(), steps[-1][1])
            elif steps:
                steps[-1][1].append(line.rstrip())
        steps = [(cmd, shown) for cmd, shown in steps if cmd.startswith("hvballoon ")]
        if steps:
            marked = NOT_RUN.search(lines[i - 1]) if i else None
            out.append((str(page.relative_to(ROOT)), i + 1, steps, marked["reason"] if marked else None))
    return out


def console_not_run(command: str) -> str | None:
    """Why ``command`` is not run here, or None."""
    return next((why for pattern, why in CONSOLE_NOT_RUN if pattern.search(command)), None)


def shown_output(shown: list[str]) -> re.Pattern[str]:
    """The output a block shows under a command as a pattern of the whole output."""
    parts = []
    for line in shown:
        if line.strip() == "\u2026":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(re.escape(line).replace("\u2026", r"[^\n]*") + r"\n")
    return re.compile("".join(parts))


CONSOLE = console_blocks()


@pytest.mark.slow  # a process per command
@pytest.mark.parametrize(("page", "line", "steps", "why"), CONSOLE, ids=[f"{b[0]}:{b[1]}" for b in CONSOLE])
def test_docs_console_commands_print_what_the_docs_show(
    page: str, line: int, steps: list[tuple[str, list[str]]], why: str | None, tmp_path: Path
) -> None:
    if why is not None:
        return
    shim = tmp_path / "bin" / "hvballoon"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hvballoon.cli "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",  # standard output and error in the order they were written
        "COLUMNS": "200",
    }
    env.pop("HVBALLOON_PASSWORD", None)
    work = tmp_path / "work"
    work.mkdir()
    for command, shown in steps:
        if console_not_run(command):
            continue
        if "| jq" in command:
            require(shutil_which("jq"), "jq is not installed")
        command = command.replace("/tmp/", f"{work}/")
        r = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        where = f"{page}:{line}: $ {command}"
        printed = "".join(f"{x.rstrip()}\n" for x in r.stdout.splitlines())
        if not shown:  # it succeeds, or exits as its comment says: "# refused … (exit 8)"
            said = re.search(r"#.*\(exit (\d+)\)", command)
            assert r.returncode == (int(said[1]) if said else 0), f"{where}\nexit {r.returncode}\n{printed}"
            continue
        expected = [x.replace("/tmp/", f"{work}/") for x in shown]
        assert shown_output(expected).fullmatch(printed), (
            f"{where}\nshown:\n" + "\n".join(expected) + f"\nprinted:\n{printed}"
        )


def test_every_console_command_runs_or_says_why_not() -> None:
    commands = [(p, n, cmd, why) for p, n, steps, why in CONSOLE for cmd, _ in steps]
    assert len(commands) >= 30  # the pages' commands were found
    ran = [c for c in commands if c[3] is None and console_not_run(c[2]) is None]
    assert len(ran) >= 20, ran
    assert all(why is None or why.strip() for *_, why in commands)


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


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
