"""A persisted world (``fake://…?state=FILE``) when SQLite refuses: the file stays locked by
another process, or it cannot be written. Each is hvballoon's typed error, the operation rolled
back whole (nothing of it kept, in the file or in the session's copy), never a traceback; and a
scenario refused when the file is made leaves no file behind."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import hvballoon
from hvballoon.errors import BackendError, OperationTimeoutError, ScenarioError
from hvballoon.fake.scenario import load_scenario
from hvballoon.fake.store import WorldStore
from hvballoon.fake.world import World
from tests.support.cli import invoke


def _seed() -> World:
    return World(load_scenario("seed"))


@contextmanager
def _held(path: Path) -> Iterator[None]:
    """Another process's write transaction on the file, for the block."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_file_locked_past_the_busy_timeout_is_a_retryable_timeout(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = WorldStore(path, _seed, busy_timeout=0.1)
    with _held(path):
        with pytest.raises(OperationTimeoutError) as info:
            with store.transaction() as w:
                w.advance(60)
        err = info.value
        assert err.retryable and "locked by another process" in err.message and str(path) in err.message
        assert err.details["state"] == str(path)
        # opening the file meanwhile is the same error, not sqlite3's
        with pytest.raises(OperationTimeoutError):
            WorldStore(path, _seed, busy_timeout=0.1)
    with store.transaction(write=False) as w:
        assert w.now == 0.0  # the block never ran
    store.close()


def test_a_write_refused_rolls_the_whole_operation_back(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = WorldStore(path, _seed)
    with store.transaction() as w:
        w.advance(10)
    store._conn.execute("PRAGMA query_only = ON")  # as a read-only file or a full disk refuse the write
    with pytest.raises(BackendError, match="nothing was changed") as info:
        with store.transaction() as w:
            w.advance(50)
    assert info.value.details["state"] == str(path)
    store._conn.execute("PRAGMA query_only = OFF")
    with store.transaction(write=False) as w:
        assert w.now == 10.0  # neither the file nor the store's copy kept the refused advance
    store.close()


def test_a_session_on_a_file_that_refuses_writes_gets_a_typed_error_and_changes_nothing(
    tmp_path: Path,
) -> None:
    uri = f"fake://seed?flavor=esxi&state={tmp_path / 'w.db'}"
    with hvballoon.connect(uri) as hv:
        before = hv.get_config("web01").limit_bytes
        hv.backend.store._conn.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
        with pytest.raises(BackendError):
            hv.set_target("web01", "8GiB")
    with hvballoon.connect(uri) as hv:
        assert hv.get_config("web01").limit_bytes == before


def test_a_scenario_refused_leaves_no_state_file_behind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB, used: 2GiB}]\n")
    state = tmp_path / "w.db"
    r = invoke("stats", f"fake://{bad}?state={state}")
    assert r.returncode == 2 and "used + cache exceed memory" in r.stderr
    r = invoke("stats", f"fake://nosuch?state={state}")
    assert r.returncode == 2 and "no scenario 'nosuch'" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
    with pytest.raises(ScenarioError):
        WorldStore(state, lambda: World(load_scenario(bad)))
    assert not state.exists()
