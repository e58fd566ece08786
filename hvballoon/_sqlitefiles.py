"""What hvballoon's SQLite files (a fake world's state, a controller's journal) share."""

from __future__ import annotations

import sqlite3


def foreign_tables(conn: sqlite3.Connection, own: set[str]) -> str | None:
    """The tables of ``conn``'s database that are not ``own`` (nor SQLite's), as a short list
    for a message; ``None`` when there are none. A file holding them is another program's
    database, refused before anything is written to it."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    foreign = sorted(t for t in tables - own if not t.startswith("sqlite_"))
    if not foreign:
        return None
    return ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
