from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

import hvballoon
from hvballoon.errors import ScenarioError
from hvballoon.fake.scenario import builtin_scenarios, load_scenario, parse_scenario
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
        (
            "name: x\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB, stats_period: 4294967296}]\n",
            "vms.0.stats_period",
            "less than or equal to 2147483647",
        ),
        (
            "name: x\nflavor: esxi\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB, shares: 99999999999999999999}]\n",
            "vms.0.shares",
            "less than or equal to 2147483647",
        ),
        (
            "name: x\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 9223372036854775807}]\n",
            "vms.0.memory",
            "more than a simulated world holds",
        ),
        ("name: [unclosed\n", "", "not valid YAML"),
        pytest.param("[" * 1000, "", "nested too deeply", id="nested-too-deeply"),
        ("- just\n- a list\n", "", "it holds a list; a scenario is a mapping"),
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


def _one_vm(flavor: str, host: str = "{physical: 32GiB}", **vm: object) -> str:
    fields = ", ".join(f"{k}: {json.dumps(v)}" for k, v in {"name": "v", **vm}.items())
    return f"name: x\nflavor: {flavor}\nhost: {host}\nvms: [{{{fields}}}]\n"


@pytest.mark.parametrize(
    ("flavor", "vm", "where", "rule"),
    [
        # ESXi: a reservation above the memory and the limit; a locked one (the memory size) too
        ("esxi", {"reservation": "8GiB", "limit": "1GiB"}, "vms.0", "reservation_le_limit"),
        ("esxi", {"reservation": "8GiB"}, "vms.0", "reservation_le_memory"),
        ("esxi", {"memory_reservation_lock": True, "limit": "2GiB"}, "vms.0", "reservation_le_limit"),
        (
            "esxi",
            {"memory_reservation_lock": True, "reservation": "1GiB"},
            "vms.0",
            "reservation_locked_to_max",
        ),
        ("esxi", {"memory": "4098MiB"}, "vms.0.memory", "memory_size_4MiB"),
        # memory hot-add: a running VM holds at most its hot-add limit
        ("esxi", {"memory_hot_add": True, "hot_add_limit": "2GiB"}, "vms.0", "memory_hot_add_limit"),
        # its limit and increment go with hot-add on
        ("esxi", {"hot_add_limit": "8GiB"}, "vms.0", None),
        ("esxi", {"memory_hot_add": True, "hot_add_increment": 0}, "vms.0", None),
        # KVM: a memory above the hotplug ceiling (<maxMemory>), which libvirt refuses to define
        ("kvm", {"memory": "8GiB", "hotplug_maximum": "4GiB"}, "vms.0", "maximum_above_hotplug_maximum"),
        # Hyper-V: the range with its defaults filled in (startup: half the memory)
        ("hyperv", {"minimum": "8GiB", "maximum": "2GiB"}, "vms.0", "range_order"),
        ("hyperv", {"minimum": "3GiB"}, "vms.0", "range_order"),
        ("hyperv", {"startup": "3GiB", "maximum": "2GiB", "minimum": "1GiB"}, "vms.0", None),
        ("hyperv", {"minimum": "16MiB"}, "vms.0.minimum", "at_least_32MiB"),
        ("hyperv", {"startup": "1001MiB"}, "vms.0.startup", "aligned_2MiB"),
        # a size the flavour makes of the memory is refused as the memory the scenario wrote
        ("hyperv", {"memory": "4095MiB"}, "vms.0.memory", "aligned_2MiB"),  # the maximum's
        ("hyperv", {"memory": "4095MiB", "dynamic": False}, "vms.0.memory", "aligned_2MiB"),  # startup's
        ("hyperv", {"memory": "8GiB", "maximum": "4095MiB"}, "vms.0.maximum", "aligned_2MiB"),
        ("hyperv", {"memory": "16MiB", "used": 0}, "vms.0.memory", "at_least_32MiB"),
    ],
)
def test_a_vm_its_flavors_rules_refuse_is_refused_at_load(
    tmp_path: Path, flavor: str, vm: dict[str, object], where: str, rule: str | None
) -> None:
    info, msg = _refused_at_load(tmp_path, flavor, vm, where)
    if rule is not None:  # the kind's own rule, as the real backend refuses it
        assert info.value.details["rule"] == rule and rule in msg, msg


@pytest.mark.parametrize(
    ("flavor", "vm", "where", "problem"),
    [
        # a static Hyper-V VM has its startup memory: it cannot hold more use than that
        ("hyperv", {"dynamic": False, "startup": "2GiB", "used": "3GiB"}, "vms.0.used", "cannot hold"),
        ("hyperv", {"dynamic": False, "startup": "8GiB"}, "vms.0.startup", "above memory"),
        ("hyperv", {"maximum": "8GiB"}, "vms.0.maximum", "above memory"),
        # nor a Dynamic Memory VM more than its maximum
        ("hyperv", {"maximum": "2GiB", "used": "3GiB"}, "vms.0.used", "holds at most its maximum"),
        # KVM's and ESXi's maximum is the memory size, which memory sets
        ("kvm", {"maximum": "2GiB"}, "vms.0.maximum", "memory size"),
        ("kvm", {"maximum": "8GiB"}, "vms.0.maximum", "memory size"),
        ("esxi", {"maximum": "2GiB"}, "vms.0.maximum", "memory size"),
    ],
)
def test_what_a_flavor_cannot_simulate_is_refused_at_load(
    tmp_path: Path, flavor: str, vm: dict[str, object], where: str, problem: str
) -> None:
    _, msg = _refused_at_load(tmp_path, flavor, vm, where)
    assert problem in msg, msg


def _refused_at_load(
    tmp_path: Path, flavor: str, vm: dict[str, object], where: str
) -> tuple[pytest.ExceptionInfo[ScenarioError], str]:
    """Load a one-VM scenario of ``flavor`` (4 GiB, 1 GiB used, ``vm`` on top): it must be
    refused naming its file and ``where``."""
    path = tmp_path / "bad.yaml"
    path.write_text(_one_vm(flavor, **{"memory": "4GiB", "used": "1GiB", **vm}))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg and f"{where}:" in msg, msg
    return info, msg


@pytest.mark.parametrize(
    ("flavor", "vm"),
    [
        ("esxi", {"maximum": "4GiB", "reservation": "4GiB", "limit": "4GiB"}),
        ("esxi", {"memory_reservation_lock": True, "reservation": "4GiB"}),
        ("kvm", {"maximum": "4GiB"}),
        ("hyperv", {"maximum": "2GiB", "minimum": "1GiB"}),  # a Dynamic Memory ceiling within memory
        ("hyperv", {"dynamic": False, "used": "4GiB"}),  # static: its startup memory is its memory
        ("hyperv", {"dynamic": False, "startup": "2GiB", "maximum": "4GiB", "buffer_percent": 30}),
        # the default startup (half the memory) is a size Hyper-V takes: a multiple of 2 MiB
        ("hyperv", {"memory": "1026MiB", "used": "100MiB"}),
    ],
)
def test_what_a_flavor_holds_loads(tmp_path: Path, flavor: str, vm: dict[str, object]) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(_one_vm(flavor, **{"memory": "4GiB", "used": "1GiB", **vm}))
    assert load_scenario(path).vms[0].name == "v"


def test_esxi_reservations_beyond_the_host_are_refused_as_admission_control_would() -> None:
    def scenario(*reservations: str) -> dict[str, object]:
        vms = [
            {"name": f"v{i}", "memory": "12GiB", "used": "1GiB", "reservation": r}
            for i, r in enumerate(reservations)
        ]
        return {"name": "x", "flavor": "esxi", "host": {"physical": "16GiB", "overhead": "1GiB"}, "vms": vms}

    # the host has 15 GiB for its VMs; each VM powered on holds its overhead too (96 MiB in the
    # fake's ESXi: "this extra memory commitment is included in the admission control calculation")
    for reservations in (("8GiB", "8GiB"), ("8GiB", "7GiB"), ("8GiB", "6980MiB")):
        with pytest.raises(ScenarioError, match="admission control") as info:
            parse_scenario(scenario(*reservations))
        assert info.value.details["path"] == "vms.1"  # the VM ESXi would not power on
    parse_scenario(scenario("8GiB", "6976MiB"))  # 15 GiB less 8 GiB and two overheads: 6976 MiB
    parse_scenario(scenario("8GiB", "6976MiB", "0"))  # a VM without a reservation powers on


@pytest.mark.parametrize(
    "sizes", [{"memory": "24GiB", "dynamic": False}, {"memory": "32GiB", "startup": "20GiB", "dynamic": True}]
)
def test_a_hyperv_vm_whose_startup_memory_the_host_lacks_is_refused_as_hyperv_would_not_start_it(
    sizes: dict[str, object],
) -> None:
    def scenario(power_state: str) -> dict[str, object]:
        vm = {"name": "big", "used": "1GiB", "power_state": power_state, **sizes}
        return {
            "name": "x",
            "flavor": "hyperv",
            "host": {"physical": "16GiB", "overhead": "1GiB"},
            "vms": [vm],
        }

    for state in ("running", "paused"):
        with pytest.raises(ScenarioError, match="Hyper-V would not start it") as info:
            parse_scenario(scenario(state))
        assert info.value.details["path"] == ("vms.0.startup" if "startup" in sizes else "vms.0.memory")
    parse_scenario(scenario("stopped"))  # a VM that does not run needs nothing of the host
    parse_scenario({**scenario("running"), "host": {"physical": "32GiB", "overhead": "1GiB"}})
    # the reserve the host keeps for itself is not its VMs': 32 GiB less 1 GiB and 12 GiB of reserve
    # leaves 19 GiB, less than the startup memory (24 or 20 GiB)
    with pytest.raises(ScenarioError, match="Hyper-V would not start it"):
        parse_scenario(
            {**scenario("running"), "host": {"physical": "32GiB", "overhead": "1GiB", "reserve": "12GiB"}}
        )


def test_a_world_of_another_flavor_checks_that_flavors_rules(tmp_path: Path) -> None:
    from hvballoon import fake
    from hvballoon.fake.world import World

    # ESXi's knobs mean nothing on KVM: the scenario loads, and is refused as an ESXi world
    path = tmp_path / "locked.yaml"
    path.write_text(_one_vm("kvm", memory="4GiB", used="1GiB", memory_reservation_lock=True, limit="2GiB"))
    scenario = load_scenario(path)
    with pytest.raises(ScenarioError, match=r"'x' as esxi: vms\.0: .*reservation_le_limit") as info:
        World(scenario, flavor="esxi")
    assert info.value.details["path"] == "vms.0" and info.value.details["flavor"] == "esxi"
    with pytest.raises(ScenarioError, match="reservation_le_limit"), fake.world(path, flavor="esxi"):
        pass
    with pytest.raises(ScenarioError, match="reservation_le_limit"):
        hvballoon.connect(f"fake://{path}?flavor=esxi")
    with hvballoon.connect(f"fake://{path}?flavor=hyperv") as hv:
        assert [vm.name for vm in hv.list_vms()] == ["v"]


def test_a_scenario_checked_once_for_a_flavor_is_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from hvballoon.fake import scenario as module
    from hvballoon.fake.world import World

    checked: list[str] = []
    real = module._vm_problem
    monkeypatch.setattr(module, "_vm_problem", lambda hv, spec: checked.append(hv.name) or real(hv, spec))
    scenario = module.parse_scenario(
        {"name": "x", "host": {"physical": "8GiB"}, "vms": [{"name": "a", "memory": "1GiB"}]}
    )
    World(scenario)  # the loader checked it as KVM: building its world costs no second check
    World(scenario, flavor="esxi")  # another flavour is checked by its own rules
    World(scenario, flavor="esxi")
    assert checked == ["kvm", "esxi"]


def test_every_builtin_holds_in_every_flavor() -> None:
    from hvballoon.fake.scenario import check_flavor

    for name in builtin_scenarios():
        for flavor in ("kvm", "esxi", "hyperv"):
            check_flavor(load_scenario(name), flavor)


@pytest.mark.parametrize(
    ("flavor", "period", "problem"),
    [
        ("hyperv", 0.001, "greater than or equal to 1"),
        ("esxi", 0.5, "greater than or equal to 1"),
        ("kvm", 5, "KVM does not rebalance"),
    ],
)
def test_a_rebalance_period_is_a_second_or_more_and_not_on_kvm(
    tmp_path: Path, flavor: str, period: float, problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(_one_vm(flavor, host=f"{{physical: 32GiB, rebalance_period: {period}}}", memory="4GiB"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert "host.rebalance_period:" in msg and problem in msg, msg


def test_a_rebalance_period_of_a_second_loads_but_not_as_kvm(tmp_path: Path) -> None:
    from hvballoon.fake.world import World

    path = tmp_path / "ok.yaml"
    path.write_text(_one_vm("hyperv", host="{physical: 32GiB, rebalance_period: 1s}", memory="4GiB"))
    scenario = load_scenario(path)
    assert scenario.host.rebalance_period == 1.0
    World(scenario, flavor="esxi")
    with pytest.raises(ScenarioError, match=r"as kvm: host\.rebalance_period: KVM does not rebalance"):
        World(scenario, flavor="kvm")


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
