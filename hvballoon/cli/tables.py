"""Large tables drawn without rich's per-cell work.

rich lays out each cell of a table as a text to wrap, pad and crop: about 1 ms a cell row, ten
seconds for the ``stats`` table of 10,000 VMs. A table of single-line plain cells that fits the
console needs none of it: :class:`PlainTable` has rich draw its title, header and borders (a
table of no rows, its columns set to their widths) and writes each row itself, the same
characters rich would write. A table it cannot draw so (a cell rich would read differently,
one too wide for the console) is drawn by rich.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions
    from rich.measure import Measurement
    from rich.table import Table

__all__ = ["PLAIN_ROWS", "PlainTable"]

#: Tables of more rows than this are a :class:`PlainTable`: smaller ones are rich's own.
PLAIN_ROWS = 100

#: What rich would read in a cell's text other than as itself: markup and its escapes, emoji
#: codes (``:smile:``), whitespace at either end (wrapped away) or inside other than spaces.
_NOT_PLAIN = re.compile(r"[\[\]\\]|:\S*?:|^\s|\s$|[^\S ]")


class PlainTable:
    """A table of ``columns`` and ``rows`` (text cells) drawn as rich draws
    ``rich.table.Table(*columns, title=title)`` with those rows, in one pass over the rows."""

    def __init__(self, columns: list[str], rows: list[list[str]], title: str | None = None) -> None:
        self.columns, self.rows, self.title = columns, rows, title
        self.row_count = len(rows)

    def rich_table(self, widths: list[int] | None = None) -> Table:
        """The same table as rich's; with ``widths``, its columns set to them and no rows."""
        from rich.markup import escape
        from rich.table import Column, Table

        if widths is not None:
            cols = [Column(c, width=w) for c, w in zip(self.columns, widths, strict=True)]
            return Table(*cols, title=None if self.title is None else escape(self.title))
        out = Table(*self.columns, title=None if self.title is None else escape(self.title))
        for r in self.rows:
            out.add_row(*[escape(c) for c in r])
        return out

    def _widths(self) -> list[int] | None:
        """Each column's width, or ``None`` when a cell is not plain text."""
        from rich.cells import cell_len

        if any(_NOT_PLAIN.search(c) for c in self.columns):  # a header rich would read otherwise
            return None
        widths = [cell_len(c) for c in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row):
                if _NOT_PLAIN.search(cell):
                    return None
                n = cell_len(cell)
                if n > widths[i]:
                    widths[i] = n
        return widths

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return self.rich_table().__rich_measure__(console, options)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        from rich.cells import cell_len
        from rich.segment import Segment

        widths = self._widths() if self.columns else None
        # two spaces of padding a cell, and the borders: one between columns and at each edge
        if widths is None or sum(widths) + 3 * len(widths) + 1 > options.max_width:
            yield from self.rich_table().__rich_console__(console, options)
            return
        frame = self.rich_table(widths)
        lines = list(Segment.split_lines(console.render(frame, options)))
        if not self.rows or frame.box is None:  # pragma: no cover - no rows: rich's own
            yield from self.rich_table().__rich_console__(console, options)
            return
        box = frame.box.substitute(options, safe=console.safe_box)
        new_line = Segment.line()
        *head, bottom = lines
        for line in head:
            yield from line
            yield new_line
        last = len(self.rows) - 1
        for k, row in enumerate(self.rows):
            left, mid, right = (
                (box.foot_left, box.foot_vertical, box.foot_right)
                if k == last
                else (box.mid_left, box.mid_vertical, box.mid_right)
            )
            cells = [f" {c}{' ' * (w - cell_len(c))} " for c, w in zip(row, widths, strict=True)]
            yield Segment(left + mid.join(cells) + right)
            yield new_line
        yield from bottom
        yield new_line
