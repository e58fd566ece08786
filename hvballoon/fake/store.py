"""A world persisted in SQLite, shared by processes (``fake://seed?state=/path/world.db``).

Every operation of the fake backend runs in one ``BEGIN IMMEDIATE`` transaction: load the
world, act, save it — so separate CLI invocations and parallel Ansible forks see one consistent
world and no update is lost. The database uses WAL and a busy timeout; only the standard
library's :mod:`sqlite3` is needed.

The store also records what the world was made from (``origin``: the scenario reference, the
flavour, the seed and the clock's speed), so that a URI naming something else is refused rather
than silently served this world (see :meth:`hvballoon.fake.backend.FakeBackend`).

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

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hvballoon.errors import HVBalloonError, InvalidRequestError
from hvballoon.fake.world import World

__all__ = ["WorldStore"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS world (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, data BLOB NOT NULL)"
_ORIGIN = "CREATE TABLE IF NOT EXISTS origin (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL)"


def world_origin(world: World, scenario_ref: str | None) -> dict[str, Any]:
    """What a world was made from: ``scenario`` (the reference it was loaded by, ``None`` when
    unknown), ``flavor``, ``seed`` and ``speed`` (``None``: a virtual clock)."""
    return {
        "scenario": scenario_ref,
        "scenario_name": world.scenario.name,
        "flavor": world.flavor,
        "seed": world.seed,
        "speed": world.speed if world.clock == "wall" else None,
    }


class WorldStore:
    """One world in one SQLite file. ``factory`` builds it the first time; ``scenario_ref``
    (how the scenario was named: ``seed``, ``/path/x.yaml``) is recorded with it in
    :attr:`origin`."""

    def __init__(
        self,
        path: str | Path,
        factory: Callable[[], World],
        *,
        scenario_ref: str | None = None,
        busy_timeout: float = 60.0,
    ) -> None:
        self.path = str(path)
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.execute(_ORIGIN)
        except sqlite3.Error as exc:
            raise InvalidRequestError(f"cannot open the fake world's state file {self.path}: {exc}") from exc
        self._cache: tuple[int, World] | None = None
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute("SELECT data FROM world WHERE id = 1").fetchone()
            if row is None:
                world = factory()
                origin = world_origin(world, scenario_ref)
                self._conn.execute(
                    "INSERT INTO world (id, version, data) VALUES (1, 1, ?)", (world.to_bytes(),)
                )
            else:
                found = self._conn.execute("SELECT data FROM origin WHERE id = 1").fetchone()
                # a state file from before origins were recorded: what its world says of itself
                origin = json.loads(found[0]) if found else world_origin(World.from_bytes(row[0]), None)
            self._conn.execute(
                "INSERT OR IGNORE INTO origin (id, data) VALUES (1, ?)", (json.dumps(origin, sort_keys=True),)
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        #: what the world was made from (see :func:`world_origin`)
        self.origin: dict[str, Any] = origin

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
