"""Large tables are drawn a row at a time, not by rich's per-cell layout (the ``stats`` table of
10,000 VMs took ten seconds), and look exactly as rich draws them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import hvballoon
from hvballoon.cli.common import STATS_COLUMNS, stats_row, table
from hvballoon.cli.tables import PLAIN_ROWS, PlainTable


class _Ascii(io.StringIO):
    encoding = "ascii"  # rich then draws its boxes in ASCII


def _drawn(renderable: Any, *, width: int = 200, terminal: bool, ascii_only: bool = False) -> str:
    out = _Ascii() if ascii_only else io.StringIO()
    Console(
        file=out, width=width, force_terminal=terminal, color_system="truecolor" if terminal else None
    ).print(renderable)
    return out.getvalue()


def _stats_rows(n: int) -> list[list[str]]:
    with hvballoon.connect("fake://seed") as hv:
        stats = hv.get_stats()
    return [[f"vm{i:04d}", *stats_row(stats[i % len(stats)])[1:]] for i in range(n)]


@pytest.mark.parametrize(
    ("terminal", "ascii_only", "width"),
    [(False, False, 200), (True, False, 200), (True, True, 200), (False, False, 60)],
)
def test_a_large_table_is_drawn_as_rich_draws_it(terminal: bool, ascii_only: bool, width: int) -> None:
    rows = _stats_rows(PLAIN_ROWS + 20)
    rows[3][0] = "名前-wide"  # wide characters
    rows[4][0] = "a  b"
    shown = table(STATS_COLUMNS, rows, title="fake://seed")
    assert isinstance(shown, PlainTable)
    mine = _drawn(shown, terminal=terminal, ascii_only=ascii_only, width=width)
    rich = _drawn(shown.rich_table(), terminal=terminal, ascii_only=ascii_only, width=width)
    assert mine == rich
    assert mine.count("\n") > PLAIN_ROWS


@pytest.mark.parametrize("cell", ["[bold]web[/bold]", ":cat:", "tab\there", "end ", " start", "x\\"])
def test_cells_rich_reads_otherwise_are_drawn_by_rich(cell: str) -> None:
    rows = [[f"vm{i}", "running"] for i in range(PLAIN_ROWS + 1)]
    rows[7][0] = cell
    shown = PlainTable(["vm", "power"], rows, title="t")
    assert _drawn(shown, terminal=True) == _drawn(shown.rich_table(), terminal=True)


def test_small_tables_are_richs_own() -> None:
    from rich.table import Table

    assert isinstance(table(["vm"], [["a"]] * PLAIN_ROWS), Table)


def test_a_large_table_lays_out_a_fixed_number_of_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich laid out every cell (render_lines once each): 10,000 rows of 12 cells, ten seconds
    calls = 0
    original = Console.render_lines

    def counted(self: Console, *a: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(self, *a, **kw)

    monkeypatch.setattr(Console, "render_lines", counted)
    counts = []
    for n in (PLAIN_ROWS + 1, 10 * PLAIN_ROWS):
        calls = 0
        _drawn(table(STATS_COLUMNS, _stats_rows(n), title="fake://seed"), terminal=False)
        counts.append(calls)
    assert counts[0] == counts[1] <= 2 * len(STATS_COLUMNS), counts


@pytest.mark.slow  # a process of its own, drawing and simulating
def test_the_benchmark_runs_and_checks_its_outputs(tmp_path: Path) -> None:
    # benchmarks/cli_scale.py at a small size: its JSON, each figure beside its reference
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "cli_scale.py"
    out = tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, str(script), "--sizes", str(PLAIN_ROWS + 10), "--sample", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    (size,) = json.loads(out.read_text())["sizes"]
    assert size["vms"] == PLAIN_ROWS + 10 and size["suggest"]["missing"] == 11
    assert {"ours_vs_rich"} <= set(size["table"]) and {"ours_vs_before_peak"} <= set(size["simulate"])
