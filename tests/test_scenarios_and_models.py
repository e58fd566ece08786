from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

import hvballoon
from hvballoon.errors import ScenarioError
from hvballoon.fake.scenario import builtin_scenarios, load_scenario
from hvballoon.models import VM, Mechanism, MemoryStats, json_schemas
from hvballoon.units import GiB


def test_seed_headline_facts() -> None:
    s = load_scenario("seed")
    assert s.host.physical == 120 * GiB
    assert len(s.vms) == 10 and all(v.memory == 16 * GiB for v in s.vms)
    assert s.promised_bytes == 160 * GiB
    assert all(v.used <= 8 * GiB for v in s.vms)
    assert len({v.workload.kind for v in s.vms}) >= 5


def test_builtins_all_load() -> None:
    assert "seed" in builtin_scenarios()
    for name in builtin_scenarios():
        assert load_scenario(name).name == name


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("name: x\nhost: {physical: 8GiB}\nvms: []\n", "vms", "at least 1"),
        (
            "name: x\nhost: {physical: 8 gigs}\nvms: [{name: a, memory: 1GiB}]\n",
            "host.physical",
            "unknown unit",
        ),
        ("name: x\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB, used: 2GiB}]\n", "vms.0", "exceed"),
        (
            "name: x\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB, colour: red}]\n",
            "vms.0.colour",
            "not permitted",
        ),
        ("name: x\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 4G}]\n", "vms.0.memory", "ambiguous"),
        (
            "name: x\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB, buffer_percent: 3}]\n",
            "vms.0.buffer_percent",
            "greater than or equal to 5",
        ),
        (
            "name: x\nseed: -1\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB}]\n",
            "seed",
            "greater than or equal to 0",
        ),
        ("name: [unclosed\n", "", "not valid YAML"),
        ("[" * 100_000, "", "nested too deeply"),
        ("- just\n- a list\n", "", "valid dictionary"),
    ],
)
def test_bad_scenarios_name_file_path_and_problem(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg and where in msg and problem in msg


def test_json_scenarios_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps({"name": "j", "host": {"physical": "8GiB"}, "vms": [{"name": "a", "memory": "1GiB"}]})
    )
    assert load_scenario(path).vms[0].memory == GiB
    path.write_text("{not json")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_scenario(path)
    path.write_text("[" * 100_000)
    with pytest.raises(ScenarioError, match="nested too deeply"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(hvballoon.InvalidRequestError):
        hvballoon.connect(f"fake://{tmp_path}/missing.yaml")


def _stats(**kw: object) -> MemoryStats:
    vm = VM(id="1", name="a", backend="fake")
    return MemoryStats(vm=vm, mechanism=Mechanism.BALLOON, collected_at=datetime.now(timezone.utc), **kw)


def test_models_are_frozen_and_strict() -> None:
    st = _stats(current_bytes=4 * GiB, guest_used_bytes=GiB)
    with pytest.raises(ValidationError):
        st.current_bytes = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        _stats(colour="red")
    with pytest.raises(ValidationError):
        _stats(current_bytes=-1)


def test_unknown_is_none_and_pressure_is_derived() -> None:
    assert _stats().pressure_ratio is None and _stats().guest_used_bytes is None
    assert _stats(current_bytes=4 * GiB, guest_used_bytes=GiB).pressure_ratio == 0.25
    assert _stats(current_bytes=4 * GiB, demand_bytes=3 * GiB, guest_used_bytes=GiB).pressure_ratio == 0.75


def test_json_round_trip_and_schema() -> None:
    st = _stats(current_bytes=4 * GiB, guest_used_bytes=GiB)
    again = MemoryStats.model_validate_json(st.model_dump_json())
    assert again == st
    schemas = json_schemas()
    assert set(schemas) == {"VM", "MemoryStats", "MemoryConfig", "Capabilities", "Change", "HostStats"}
    assert "current_bytes" in schemas["MemoryStats"]["properties"]


def test_used_bytes_is_part_of_the_serialized_stats() -> None:
    kvm = _stats(current_bytes=4 * GiB, guest_used_bytes=GiB, demand_bytes=2 * GiB)
    hyperv = _stats(current_bytes=4 * GiB, demand_bytes=3 * GiB)
    assert kvm.model_dump()["used_bytes"] == GiB  # guest used first
    assert hyperv.model_dump(mode="json")["used_bytes"] == 3 * GiB  # else demand
    assert _stats().model_dump()["used_bytes"] is None
    props = json_schemas()["MemoryStats"]["properties"]
    assert {"used_bytes", "pressure_ratio"} <= set(props)
    assert hyperv.model_dump()["pressure_ratio"] == 0.75


def test_derived_figures_round_trip_and_are_recomputed() -> None:
    st = _stats(current_bytes=4 * GiB, guest_used_bytes=GiB)
    assert MemoryStats.model_validate(st.model_dump()) == st
    assert MemoryStats.model_validate_json(st.model_dump_json()) == st
    # a stale derived figure in the input is recomputed from the figures it derives from
    data = {**st.model_dump(), "used_bytes": 99, "pressure_ratio": 9.0}
    again = MemoryStats.model_validate(data)
    assert (again.used_bytes, again.pressure_ratio) == (GiB, 0.25)


@pytest.mark.parametrize("flavor", ["kvm", "esxi", "hyperv"])
def test_a_plain_model_dump_is_json_data(flavor: str) -> None:
    """``json.dumps(model.model_dump())`` works and says what ``model_dump_json()`` says."""
    with hvballoon.connect(f"fake://seed?flavor={flavor}") as hv:
        models = [
            *hv.list_vms(),
            *hv.get_stats(),
            hv.get_config("web01"),
            hv.capabilities,
            hv.vm_capabilities("db01"),
            hv.set_target("web01", "16GiB", dry_run=True),
            *hv.get_host_stats(),
        ]
        for m in models:
            assert json.loads(json.dumps(m.model_dump())) == json.loads(m.model_dump_json()), type(m)
            assert type(m).model_validate(m.model_dump()) == m
