"""A world persisted in SQLite, shared by processes (``fake://seed?state=/path/world.db``).

Every operation of the fake backend runs in one ``BEGIN IMMEDIATE`` transaction: load the
world, act, save it — so separate CLI invocations and parallel Ansible forks see one consistent
world and no update is lost. The database uses WAL and a busy timeout; only the standard
library's :mod:`sqlite3` is needed.

>>> import tempfile, os
>>> from hvballoon.fake.scenario import load_scenario
>>> from hvballoon.fake.world import World
>>> path = os.path.join(tempfile.mkdtemp(), "world.db")
>>> store = WorldStore(path, lambda: World(load_scenario("seed")))
>>> with store.transaction() as w:
...     w.advance(60)
>>> with store.transaction(write=False) as w:
...     w.now
60.0
>>> store.close()
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hvballoon.errors import HVBalloonError, InvalidRequestError
from hvballoon.fake.world import World

__all__ = ["WorldStore"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS world (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, data BLOB NOT NULL)"


class WorldStore:
    """One world in one SQLite file. ``factory`` builds it the first time."""

    def __init__(self, path: str | Path, factory: Callable[[], World], *, busy_timeout: float = 60.0) -> None:
        self.path = str(path)
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise InvalidRequestError(f"cannot open the fake world's state file {self.path}: {exc}") from exc
        self._cache: tuple[int, World] | None = None
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._conn.execute("SELECT 1 FROM world WHERE id = 1").fetchone() is None:
                self._conn.execute(
                    "INSERT INTO world (id, version, data) VALUES (1, 1, ?)", (factory().to_bytes(),)
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[World]:
        """The world, locked for this block; saved at the end when ``write`` (and on hvballoon
        errors too, so that scripted-fault counters survive the error they raise)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            version, data = conn.execute("SELECT version, data FROM world WHERE id = 1").fetchone()
            if self._cache is not None and self._cache[0] == version:
                world = self._cache[1]
            else:
                world = World.from_bytes(data)
            try:
                yield world
            except HVBalloonError:
                if write:
                    self._save(world, version)
                conn.execute("COMMIT")
                raise
            if write:
                self._save(world, version)
            else:
                self._cache = (version, world)
            conn.execute("COMMIT")
        except HVBalloonError:
            raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._cache = None
            raise

    def _save(self, world: World, version: int) -> None:
        self._conn.execute(
            "UPDATE world SET version = ?, data = ? WHERE id = 1", (version + 1, world.to_bytes())
        )
        self._cache = (version + 1, world)
