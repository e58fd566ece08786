"""``hvballoon simulate`` writes its outputs from the recording's arrays: no VM's series is
built as a list unless an output needs it, and then once. At 10,000 VMs the run's series as
per-VM lists of Python integers were most of a 1.2 GB peak."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hvballoon.fake.record import Recorder, record
from hvballoon.fake.scenario import load_scenario
from hvballoon.fake.world import World
from tests.support.cli import invoke


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The VMs whose series were built as lists (``Recorder.vm_series``), in order; building
    the whole text (``to_data``, ``to_json``, ``to_csv``) is refused."""
    calls: list[int] = []
    original = Recorder.vm_series

    def counted(self: Recorder, index: int) -> dict[str, list[int]]:
        calls.append(index)
        return original(self, index)

    def whole(*_a: object, **_kw: object) -> None:
        raise AssertionError("the whole recording was built")

    monkeypatch.setattr(Recorder, "vm_series", counted)
    for name in ("to_data", "to_json", "to_csv"):
        monkeypatch.setattr(Recorder, name, whole)
    return calls


def test_the_summary_builds_no_vms_series(built: list[int]) -> None:
    r = invoke("simulate", "seed", "--duration", "10m", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["vms"]) == 10
    assert built == []


def test_the_series_and_csv_are_written_a_vm_at_a_time(built: list[int], tmp_path: Path) -> None:
    series, table = tmp_path / "s.json", tmp_path / "s.csv"
    r = invoke(
        "simulate", "seed", "--duration", "10m", "--every", "1m", "--series", str(series), "--csv", str(table)
    )
    assert r.returncode == 0, r.stderr
    assert built == list(range(10))  # each VM's series once, for --series; none for the CSV
    assert len(json.loads(series.read_text())["vms"]) == 10
    assert len(table.read_text().splitlines()) == 1 + 10 * 11


def test_the_streamed_outputs_are_the_texts() -> None:
    w = World(load_scenario("seed-spike"))
    rec = record(w, every=7)
    w.advance(300 * 7 + 3)  # more samples than a block holds
    assert len(rec.t) > 256
    data = rec.to_data()
    assert rec.to_json() == json.dumps(data)
    _head, *rows = rec.to_csv().splitlines()
    assert len(rows) == len(rec.t) * len(w.labels)
    name = w.labels[3]
    mine = [r.split(",") for r in rows if r.split(",")[1] == name]
    assert [int(r[2]) for r in mine] == data["vms"][name]["demand_bytes"]
    assert [int(r[6]) for r in mine] == data["vms"][name]["oom_events"]
    extremes = rec.extremes()
    assert extremes["demand_bytes"]["max"][3] == max(data["vms"][name]["demand_bytes"])
    assert extremes["current_bytes"]["min"][3] == min(data["vms"][name]["current_bytes"])
