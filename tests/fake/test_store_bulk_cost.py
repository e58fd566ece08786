"""A bulk call on a persisted world loads and saves the world a fixed number of times, however
many VMs it names (each save and each read of the world's bytes is the whole world: once per VM
made a bulk call quadratic)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import hvballoon
from hvballoon.units import GiB


class _CountedConnection:
    """The store's connection, counting the statements that write or read the world's bytes."""

    def __init__(self, conn: Any, counts: Counter[str]) -> None:
        self._conn = conn
        self._counts = counts

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("UPDATE world"):
            self._counts["saved"] += 1
        elif sql.startswith("SELECT") and "data FROM world" in sql:
            self._counts["read"] += 1
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _bulk_counts(tmp_path: Path, vms: int) -> Counter[str]:
    scenario = tmp_path / f"host-{vms}.json"
    fleet = [{"name": f"vm{i:03d}", "memory": "4GiB", "used": "1GiB"} for i in range(vms)]
    scenario.write_text(
        json.dumps({"name": f"vms-{vms}", "host": {"physical": f"{8 * vms}GiB"}, "vms": fleet})
    )
    counts: Counter[str] = Counter()
    with hvballoon.connect(f"fake://{scenario}?state={tmp_path / f'w-{vms}.db'}") as hv:
        store = hv.backend.store
        store._conn = _CountedConnection(store._conn, counts)
        results = hv.set_targets({f"vm{i:03d}": "3GiB" for i in range(vms)})
        assert results.ok and all(c.changed for c in results.changes.values())
        (st,) = hv.get_stats([f"vm{vms - 1:03d}"])
    assert st.target_bytes == 3 * GiB  # applied and saved
    return counts


def test_set_targets_on_a_persisted_world_saves_it_a_fixed_number_of_times(tmp_path: Path) -> None:
    few, many = _bulk_counts(tmp_path, 3), _bulk_counts(tmp_path, 40)
    assert many["saved"] == few["saved"] <= 4, (few, many)
    assert many["read"] == few["read"], (few, many)
