"""Scenario files at their edges: figures that mean nothing, refused with a ScenarioError
naming the field rather than simulated (a step the world's clock cannot keep, or never ends a
run with; pairs of workload sizes given the wrong way round), and a scripted connect fault that
the session's retries must get past."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hvballoon
from hvballoon import RetryPolicy
from hvballoon.errors import HVConnectionError, ScenarioError
from hvballoon.fake.scenario import load_scenario, parse_scenario
from hvballoon.fake.world import World
from tests.support.cli import invoke

_VM = {"name": "a", "memory": "8GiB", "used": "1GiB"}


def _scenario(step: object = None, workload: dict[str, object] | None = None) -> dict[str, object]:
    vm = dict(_VM, **({"workload": workload} if workload else {}))
    data: dict[str, object] = {"name": "t", "host": {"physical": "32GiB"}, "vms": [vm]}
    if step is not None:
        data["step"] = step
    return data


@pytest.mark.parametrize("step", ["1e-9", "0.0009", "0.5ms", 1e-13])
def test_a_step_below_a_millisecond_is_refused_naming_the_step(step: object, tmp_path: Path) -> None:
    # a nanosecond step was accepted, and a controller's first round of 10 s on it (ten billion
    # steps) ran for a quarter of an hour, past SIGTERM; below the clock's microsecond the
    # world has no grid at all
    with pytest.raises(ScenarioError, match=r"step: Input should be greater than or equal to 0\.001"):
        parse_scenario(_scenario(step))
    path = tmp_path / "tiny-step.yaml"
    path.write_text(f"name: t\nstep: {step}\nhost: {{physical: 32GiB}}\nvms: [{{name: a, memory: 8GiB}}]\n")
    r = invoke("autoballoon", f"fake://{path}", "--once", "--dry-run", "--journal", str(tmp_path / "j.db"))
    assert r.returncode == 2 and "step: Input should be greater than or equal to 0.001" in r.stderr, r.stderr


def test_a_millisecond_step_runs_and_the_cli_holds_its_step_to_the_same_bound() -> None:
    w = World(parse_scenario(_scenario("1ms")))
    w.advance(1.5)
    assert w.step == 0.001 and w.now == 1.5
    r = invoke("simulate", "seed", "--duration", "10s", "--step", "0.5ms")
    assert r.returncode == 2 and "--step must be from 1ms to 60s" in r.stderr, r.stderr
    assert invoke("simulate", "seed", "--duration", "2s", "--step", "1ms").returncode == 0


@pytest.mark.parametrize(
    ("workload", "says"),
    [
        (
            {"kind": "random_walk", "params": {"low": "2GiB", "high": "1GiB"}},
            "vms.0.workload: random_walk workload: params.high: 1 GiB is below low 2 GiB",
        ),
        (
            {"kind": "jvm", "params": {"heap": "2GiB", "initial_heap": "4GiB"}},
            "vms.0.workload: jvm workload: params.initial_heap: 4 GiB is above heap 2 GiB",
        ),
        (
            {"kind": "database", "params": {"buffer_pool": "2GiB", "filled": "3GiB"}},
            "vms.0.workload: database workload: params.filled: 3 GiB is above buffer_pool 2 GiB",
        ),
        (
            {
                "kind": "mixed",
                "params": {"parts": [{"kind": "random_walk", "params": {"low": "3GiB", "high": 0}}]},
            },
            "mixed workload: parts.0: random_walk workload: params.high: 0 B is below low 3 GiB",
        ),
    ],
)
def test_workload_sizes_the_wrong_way_round_are_refused(workload: dict[str, object], says: str) -> None:
    # a walk with its bounds crossed was held flat at the VM's use; a JVM's initial heap above
    # its maximum, or a pool filled past its size, simulated as if they were the maximum
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_scenario(workload=workload))
    assert says in str(info.value), info.value


def test_equal_bounds_and_the_built_in_workloads_are_still_accepted() -> None:
    parse_scenario(_scenario(workload={"kind": "random_walk", "params": {"low": "1GiB", "high": "1GiB"}}))
    parse_scenario(_scenario(workload={"kind": "jvm", "params": {"heap": "2GiB", "initial_heap": "2GiB"}}))
    assert load_scenario("java").vms


def test_a_scripted_connect_fault_of_a_scenario_file_is_retried_past(tmp_path: Path) -> None:
    # outside a fake.world block each attempt of a connect built a fresh world, whose connect
    # fault of count 1 fired again: the session's retries never got through, and no command
    # could ever connect to such a scenario
    path = tmp_path / "flaky-connect.yaml"
    path.write_text(
        "name: t\nhost: {physical: 32GiB}\nvms: [{name: a, memory: 8GiB}]\n"
        "faults: [{op: connect, kind: connection_lost, count: 2}]\n"
    )
    waits: list[float] = []
    with hvballoon.connect(f"fake://{path}", retry=RetryPolicy(sleep=waits.append)) as hv:
        assert [vm.name for vm in hv.list_vms()] == ["a"]
    assert len(waits) == 2  # two attempts failed, the third connected
    r = invoke("vms", f"fake://{path}", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["name"] == "a", r.stderr
    # each connect is still a fresh world: the next one meets the fault again, and a fault
    # that outlasts the attempts still fails the connect
    with pytest.raises(HVConnectionError):
        hvballoon.connect(f"fake://{path}", retry=RetryPolicy(max_attempts=2, sleep=waits.append))


@pytest.mark.parametrize(
    ("written", "read_as"),
    [
        ("off", "the boolean false (unquoted, YAML reads off, no, yes, on as booleans)"),
        ("yes", "the boolean true"),
        ("007", "the number 7"),
        ("1.10", "the number 1.1"),
        ("2024-01-01", "a date (2024-01-01)"),
    ],
)
def test_a_name_yaml_reads_as_something_else_says_what_and_to_quote_it(
    written: str, read_as: str, tmp_path: Path
) -> None:
    # "vms.0.name: Input should be a valid string" for a VM named off or 007 left the reader to
    # guess that YAML had read the name as a boolean or a number
    path = tmp_path / "names.yaml"
    path.write_text(f"name: t\nhost: {{physical: 32GiB}}\nvms: [{{name: {written}, memory: 8GiB}}]\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert f"vms.0.name: a name or id is text, but this was read as {read_as}" in str(info.value)
    assert str(info.value).endswith(": quote it"), info.value
    path.write_text(f"name: t\nhost: {{physical: 32GiB}}\nvms: [{{name: '{written}', memory: 8GiB}}]\n")
    assert load_scenario(path).vms[0].name == written


def test_a_fault_naming_no_vm_of_the_scenario_is_refused(tmp_path: Path) -> None:
    # a rule for a misspelt VM never fired on a call on a VM: the test it was written for ran
    # without the failure and passed
    path = tmp_path / "typo.yaml"
    path.write_text(
        "name: t\nhost: {physical: 32GiB}\nvms: [{name: web01, memory: 8GiB}, {name: db01, memory: 8GiB}]\n"
        "faults: [{op: set_target, kind: permission_denied, vm: db01}, {op: set_target, kind: timeout, vm: web0l}]\n"
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert "faults.1.vm: no VM of the scenario is named 'web0l' (did you mean 'web01'?)" in str(info.value)
    assert info.value.details["path"] == "faults.1.vm"
    r = invoke("set", f"fake://{path}", "web01", "4GiB")
    assert r.returncode == 2 and "faults.1.vm" in r.stderr, r.stderr
    path.write_text(path.read_text().replace("web0l", "web01"))
    assert [rule.vm for rule in load_scenario(path).faults] == ["db01", "web01"]


def test_an_empty_id_is_refused_not_replaced_by_a_drawn_one() -> None:
    # id: "" was taken for no id: the VM got a generated one, not the id the file gave it
    data = _scenario()
    data["vms"] = [dict(_VM, id="")]
    with pytest.raises(ScenarioError, match=r"vms\.0\.id: String should have at least 1 character"):
        parse_scenario(data)
    data["vms"] = [dict(_VM, id="vm-1")]
    assert parse_scenario(data).vms[0].id == "vm-1"
