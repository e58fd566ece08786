"""Persistence: a world as bytes, and a world persisted in SQLite, shared by processes
(``fake://seed?state=/path/world.db``).

:func:`world_to_bytes` writes a JSON header (the scenario, flavour, clock, configurations,
events, faults, the random generator, and the type and shape of each of the state's arrays),
then the arrays' bytes, packed (no pickle); :func:`world_from_bytes` reads it back — also what
earlier versions wrote (the arrays in a numpy ``.npz`` archive, and before the state had named
fields, under short names).

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
>>> world_from_bytes(world_to_bytes(World(load_scenario("seed")))).accounting()["host"]["conserved"]
True
>>> with store.transaction() as w:
...     w.advance(60)
>>> with store.transaction(write=False) as w:
...     w.now
60.0
>>> store.close()
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hvballoon._sqlitefiles import foreign_tables
from hvballoon.errors import BackendError, HVBalloonError, InvalidRequestError, OperationTimeoutError
from hvballoon.fake.faults import FaultPlan
from hvballoon.fake.scenario import Scenario
from hvballoon.fake.state import GuestState
from hvballoon.fake.world import World, _first_runs

__all__ = ["LEGACY_STATE_NAMES", "WorldStore", "world_from_bytes", "world_to_bytes"]

#: The bytes' layout: 3 since the arrays are packed after the header, described in it (2: the
#: same arrays in a numpy ``.npz`` archive; 1: the arrays by short names).
FORMAT = 3
#: The kinds of array a world holds (bool, integers, floats): nothing else is read back.
_ARRAY_KINDS = frozenset("biuf")
#: The name each state array had in format 1 (an array added since is not there: a world
#: loaded from format 1 keeps it as its configuration sets it).
LEGACY_STATE_NAMES: dict[str, str] = {
    "memory": "mem",
    "kernel": "kern",
    "unfreeable": "unf",
    "swap_size": "wsize",
    "cache_max": "cmax",
    "touch_rate": "touch",
    "used_baseline": "used0",
    "overhead": "ovh",
    "inflate_rate": "rin",
    "deflate_rate": "rout",
    "target": "tgt",
    "current": "cur",
    "cache": "cache",
    "swap_backlog": "z",
    "guest_swapped": "swp",
    "demand": "dem",
    "effective_demand": "deff",
    "used": "usedg",
    "free": "free",
    "host_backed": "gbk",
    "swap_in": "swin",
    "swap_out": "swout",
    "major_faults": "majf",
    "oom_events": "ooms",
    "oom_now": "oomf",
    "host_swapped": "hsw",
    "compressed": "comp",
    "shared": "shr",
    "compression_cache": "zpool",
    "running": "running",
    "crashed": "crashed",
    "paused": "paused",
    "balloon_driver": "driver",
    "deflate_on_oom": "don",
    "stats_period": "period",
    "stats_anchor": "anchor",
    "last_report": "last_rep",
    "reports_frozen_until": "freeze",
    "stalled_at": "stall",
    "report_total": "rep_total",
    "report_used": "rep_used",
    "report_free": "rep_free",
    "report_cache": "rep_cache",
    "report_swap_in": "rep_swin",
    "report_swap_out": "rep_swout",
    "report_major_faults": "rep_majf",
    "limit": "limit",
    "balloon_cap": "cap",
    "shares": "shares",
    "dynamic": "dyn",
    "dm_minimum": "dmin",
    "dm_maximum": "dmax",
    "dm_buffer_percent": "buf",
    "dm_priority": "prio",
    "startup": "startup",
}


def world_to_bytes(world: World) -> bytes:
    """The whole world as bytes: a JSON header describing the state's arrays, then their bytes
    one after the other (no pickle)."""
    import numpy as np

    with world.lock:
        header = {
            "format": FORMAT,
            "scenario": world.scenario.model_dump(mode="json"),
            "flavor": world.flavor,
            "seed": world.seed,
            "now": world.now,
            "clock": world.clock,
            "speed": world.speed,
            "wall_origin": world.wall_origin,
            "power": world.power,
            "names": world.names,  # as renamed since the scenario named them
            "runs": world.runs,
            "configs": world.configs,
            "events": world.events,
            "faults": world.faults.to_data(),
            "rng": world.rng.bit_generator.state,
            "host_free": world.host_free_bytes,
            "pressure": world.pressure_bytes,
            "next_rebalance": world._next_rebalance,
            "version": world.version,
        }
        arrays = {f"state.{k}": v for k, v in world.state.arrays().items()}
        arrays.update({f"walk.{i}": b.walk for i, b in enumerate(world.workloads)})
        if world._steered is not None:
            # the periodic hypervisor's decision in force (ESXi, Hyper-V)
            arrays["rebalance.goal"], arrays["rebalance.low"] = world._steered
        header["arrays"] = [[key, a.dtype.str, list(a.shape)] for key, a in arrays.items()]
        head = json.dumps(header, separators=(",", ":")).encode()
        body = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())
        return len(head).to_bytes(8, "big") + head + body


def _packed_arrays(header: dict[str, Any], body: memoryview) -> dict[str, Any]:
    """The arrays format 3 packs after its header, each a copy; a description that does not
    fit the bytes (a damaged or edited blob) is a ``ValueError``."""
    import numpy as np

    arrays: dict[str, Any] = {}
    offset = 0
    for key, dtype_str, shape in header["arrays"]:
        dtype = np.dtype(dtype_str)
        if dtype.kind not in _ARRAY_KINDS or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"array {key!r}: {dtype_str} {shape} is not an array a world holds")
        count = int(np.prod(shape, dtype=np.int64))
        size = count * dtype.itemsize
        if offset + size > len(body):
            raise ValueError(f"array {key!r} runs past the end of the data")
        arrays[key] = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape).copy()
        offset += size
    if offset != len(body):
        raise ValueError("data left over after the last array")
    return arrays


def _archived_arrays(data: bytes) -> dict[str, Any]:
    """The arrays formats 1 and 2 wrote in a numpy ``.npz`` archive, each a copy."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key].copy() for key in npz.files}


def world_from_bytes(data: bytes) -> World:
    """The world :func:`world_to_bytes` wrote."""
    size = int.from_bytes(data[:8], "big")
    header = json.loads(data[8 : 8 + size])
    scenario = Scenario.model_validate(header["scenario"])
    w = World(
        scenario, flavor=header["flavor"], seed=header["seed"], clock=header["clock"], speed=header["speed"]
    )
    legacy = header.get("format", 1) == 1
    body = data[8 + size :]
    arrays = _packed_arrays(header, memoryview(body)) if header.get("format") == 3 else _archived_arrays(body)
    missing = []
    for name in w.state.names():
        if legacy and name not in LEGACY_STATE_NAMES:
            continue
        key = f"a_{LEGACY_STATE_NAMES[name]}" if legacy else f"state.{name}"
        if key not in arrays:
            missing.append(name)  # an array added since: as the configuration sets it (below)
            continue
        setattr(w.state, name, arrays[key])
    for i, b in enumerate(w.workloads):
        b.walk = arrays[f"walk_{i}" if legacy else f"walk.{i}"]
        b.walk_at = math.floor(float(header["now"]) / b.grid_seconds + 1e-9)  # drawn up to the clock
    if "rebalance.goal" in arrays:
        w._steered = (arrays["rebalance.goal"], arrays["rebalance.low"])
    w.now = float(header["now"])
    origin = header["wall_origin"]
    w.wall_origin = None if origin is None else (float(origin[0]), float(origin[1]))
    w.power = list(header["power"])
    # a world saved before names were kept has its scenario's (a rename since was lost)
    for g, name in zip(list(w.guests.values()), header.get("names", w.names), strict=True):
        if g.name != name:
            w.rename(g.id, str(name))
    # a world saved before runs were kept: numbered afresh from its power states
    w.runs = list(header["runs"]) if "runs" in header else _first_runs(w.power)
    # a configuration key added since the world was saved keeps the value its scenario gives
    w.configs[:] = [{**fresh, **saved} for fresh, saved in zip(w.configs, header["configs"], strict=True)]
    for i, g in enumerate(w.guests.values()):
        g.config = w.configs[i]
    if missing:
        derived = GuestState(**{name: arr.copy() for name, arr in w.state.arrays().items()})
        for i, config in enumerate(w.configs):
            derived.set_config(i, config)
        for name in missing:
            setattr(w.state, name, getattr(derived, name))
    w.events = list(header["events"])
    w.faults = FaultPlan.from_data(header["faults"])
    w.rng.bit_generator.state = header["rng"]
    w.host_free_bytes = int(header["host_free"])
    w.pressure_bytes = float(header["pressure"])
    # saved before rebalancing was held between its due times: the next block decides afresh
    w._next_rebalance = float(header.get("next_rebalance", 0.0))
    w.version = int(header["version"])
    return w


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


def _origin(path: str, text: str) -> dict[str, Any]:
    """The origin recorded in a state file, or a clear error if it was damaged."""
    try:
        origin = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        origin = None
    if not isinstance(origin, dict):
        raise InvalidRequestError(
            f"the origin recorded in {path} cannot be read (the file was damaged or written by something "
            "else); delete the file or name another to start a new world"
        )
    return origin


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
        self._busy_timeout = busy_timeout
        # a new file's world is made before the file: a scenario refused leaves no file behind
        # (a process that creates the file meanwhile wins, and this world is dropped)
        fresh = None if Path(self.path).exists() else factory()
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            foreign = foreign_tables(self._conn, {"world", "origin"})  # a journal, anything
            if foreign:
                self._conn.close()
                raise InvalidRequestError(
                    f"{self.path} is not a fake world's state file: it is a database with other tables "
                    f"({foreign}); name another state file"
                )
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.execute(_ORIGIN)
        except sqlite3.Error as exc:
            if hasattr(self, "_conn"):
                self._conn.close()
            failure = self._failure(exc, "cannot open")
            if isinstance(failure, OperationTimeoutError):
                raise failure from exc
            raise InvalidRequestError(f"cannot open the fake world's state file {self.path}: {exc}") from exc
        self._cache: tuple[int, World] | None = None
        try:
            self.origin: dict[str, Any] = self._first(
                lambda: fresh if fresh is not None else factory(), scenario_ref
            )
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._failure(exc, "cannot open") from exc

    def _first(self, factory: Callable[[], World], scenario_ref: str | None) -> dict[str, Any]:
        """The world's origin, the world made and saved first if the file has none."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute("SELECT data FROM world WHERE id = 1").fetchone()
            if row is None:
                world = factory()
                origin = world_origin(world, scenario_ref)
                self._conn.execute(
                    "INSERT INTO world (id, version, data) VALUES (1, 1, ?)", (world_to_bytes(world),)
                )
            else:
                found = self._conn.execute("SELECT data FROM origin WHERE id = 1").fetchone()
                # a state file from before origins were recorded: what its world says of itself
                origin = _origin(self.path, found[0]) if found else world_origin(self._decode(row[0]), None)
            self._conn.execute(
                "INSERT OR IGNORE INTO origin (id, data) VALUES (1, ?)", (json.dumps(origin, sort_keys=True),)
            )
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        #: what the world was made from (see :func:`world_origin`)
        return origin

    def _failure(self, exc: sqlite3.Error, doing: str) -> HVBalloonError:
        """What SQLite refused, as hvballoon's error: the file stayed locked by another
        process past the busy timeout (retryable), or it could not be read or written (a
        read-only file or folder, a full disk). The transaction was rolled back: nothing of the
        operation was kept."""
        name = getattr(exc, "sqlite_errorname", "")
        details = {"state": self.path, "sqlite_error": name or type(exc).__name__}
        if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "database is locked" in str(exc):
            return OperationTimeoutError(
                f"the fake world in {self.path} stayed locked by another process for "
                f"{self._busy_timeout:g} s; nothing was changed, try again",
                native_code=name or None,
                details=details,
            )
        return BackendError(
            f"{doing} the fake world's state file {self.path}: {exc}; nothing was changed",
            native_code=name or None,
            details=details,
        )

    def close(self) -> None:
        self._conn.close()

    def _decode(self, data: bytes) -> World:
        """The world stored, or a clear error if the file's world was damaged or edited."""
        try:
            return world_from_bytes(data)
        except Exception as exc:  # whatever a damaged blob makes the decoder raise
            raise InvalidRequestError(
                f"the fake world in {self.path} cannot be read ({type(exc).__name__}: it was damaged or "
                "written by something else); delete the file or name another to start a new world"
            ) from exc

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[World]:
        """The world, locked for this block; saved at the end when ``write`` (and on hvballoon
        errors too, so that scripted-fault counters survive the error they raise). What SQLite
        refuses meanwhile rolls the whole block back and is raised as hvballoon's error
        (:meth:`_failure`)."""
        try:
            with self._transaction(write=write) as world:
                yield world
        except sqlite3.Error as exc:
            self._cache = None  # the world in memory may hold what was not saved
            raise self._failure(exc, "cannot use") from exc

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[World]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            # the world's bytes are read only when another process changed it since this one
            # last saw it (a question asked once per VM costs nothing per VM)
            (version,) = conn.execute("SELECT version FROM world WHERE id = 1").fetchone()
            if self._cache is not None and self._cache[0] == version:
                world = self._cache[1]
            else:
                (data,) = conn.execute("SELECT data FROM world WHERE id = 1").fetchone()
                world = self._decode(data)
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
            if conn.in_transaction:  # the world could not be read: nothing to keep
                conn.execute("ROLLBACK")
            raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._cache = None
            raise

    def _save(self, world: World, version: int) -> None:
        self._conn.execute(
            "UPDATE world SET version = ?, data = ? WHERE id = 1", (version + 1, world_to_bytes(world))
        )
        self._cache = (version + 1, world)
