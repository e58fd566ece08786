"""Rate-based faults: a steady fraction of the calls fails, each failure lasting ``burst``
attempts (per VM), so that a caller's retries see an outage through."""

from __future__ import annotations

from pathlib import Path

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import HVConnectionError, OperationTimeoutError, ScenarioError
from hvballoon.fake.faults import FaultPlan
from hvballoon.fake.scenario import load_scenario
from hvballoon.fake.world import World
from hvballoon.retry import RetryPolicy

INSTANT = RetryPolicy(sleep=lambda _s: None)  # three attempts, no waiting


def test_a_rate_fires_on_that_fraction_of_the_calls_evenly_and_the_same_every_run() -> None:
    def pattern() -> list[bool]:
        plan = FaultPlan(seed=3)
        plan.add(op="set_target", kind="connection_lost", rate=1 / 3)
        return [plan.hit("set_target") is not None for _ in range(300)]

    first = pattern()
    assert sum(first) == 100
    assert first == pattern()
    # evenly: every third call, never two in a row
    assert [i for i, hit in enumerate(first) if hit][:4] == [2, 5, 8, 11]


def test_a_burst_lasts_that_many_attempts_of_the_same_vm() -> None:
    plan = FaultPlan()
    plan.add(op="set_target", kind="connection_lost", rate=0.5, burst=3)
    calls = ["a", "b", "b", "a", "b", "c", "c", "c", "c"]
    hits = [plan.hit("set_target", vm) is not None for vm in calls]
    # a: half a firing; b fires and keeps failing for b's next two attempts, whoever comes
    # between (a adds its half meanwhile); c then fires at once and lasts three attempts
    assert hits == [False, True, True, False, True, True, True, True, False]


def test_count_caps_the_firings_of_a_rate_rule_not_its_attempts() -> None:
    plan = FaultPlan()
    plan.add(op="get_stats", kind="timeout", rate=1.0, burst=2, count=1)
    assert [plan.hit("get_stats") is not None for _ in range(4)] == [True, True, False, False]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"rate": 0}, "rate must be in"),
        ({"rate": 1.5}, "rate must be in"),
        ({"rate": 0.5, "probability": 0.5}, "either rate or probability"),
        ({"rate": 0.5, "burst": 0}, "burst must be"),
        ({"rate": 0.5, "burst": 1.5}, "burst must be"),
        ({"rate": 0.5, "burst": True}, "burst must be"),
    ],
)
def test_bad_rate_rules_are_refused(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FaultPlan().add(op="get_stats", kind="timeout", **kwargs)  # type: ignore[arg-type]


def test_an_outage_under_way_survives_persisting_the_plan() -> None:
    plan = FaultPlan()
    plan.add(op="get_stats", kind="timeout", rate=0.5, burst=3)
    assert [plan.hit("get_stats") is not None for _ in range(3)] == [False, True, True]
    again = FaultPlan.from_data(plan.to_data())
    assert [again.hit("get_stats") is not None for _ in range(3)] == [True, False, True]


def test_a_plan_without_rate_rules_saves_as_before_they_existed() -> None:
    plan = FaultPlan(seed=3)
    plan.add(op="get_stats", kind="timeout", count=2)
    (rule,) = plan.to_data()["rules"]
    assert not {"rate", "burst", "credit", "bursts"} & set(rule)  # a saved world's digest is kept
    assert FaultPlan.from_data(plan.to_data()).rules == plan.rules


def test_the_sessions_retries_see_a_burst_through() -> None:
    with fake.world("seed") as w, hvballoon.connect("fake://seed", world=w, retry=INSTANT) as hv:
        w.faults.add(op="get_stats", kind="timeout", rate=0.5, burst=3)
        outcomes = []
        for _ in range(6):
            try:
                hv.get_stats()
                outcomes.append("ok")
            except OperationTimeoutError:
                outcomes.append("timeout")
        assert outcomes == ["ok", "timeout"] * 3  # half the sweeps, retries and all
        # a blip (burst 1) is what the retries are for
        w.faults.clear()
        w.faults.add(op="get_stats", kind="connection_lost", rate=1.0)
        with pytest.raises(HVConnectionError):
            hv.get_stats()  # every attempt fails
        w.faults.clear()
        w.faults.add(op="get_stats", kind="connection_lost", rate=0.5)
        assert all(len(hv.get_stats()) == 10 for _ in range(4))


def test_rate_and_burst_from_the_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    head = "name: f\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB, used: 256MiB}]\n"
    path.write_text(head + "faults: [{op: get_stats, kind: timeout, rate: 0.5, burst: 3}]\n")
    w = World(load_scenario(path))
    assert [w.faults.hit("get_stats") is not None for _ in range(5)] == [False, True, True, True, False]
    for bad, problem in [
        ("rate: 0", "faults.0.rate"),
        ("rate: 2", "faults.0.rate"),
        ("rate: half", "faults.0.rate"),
        ("rate: 0.5, probability: 0.5", "either rate or probability"),
        ("rate: 0.5, burst: 0", "faults.0.burst"),
    ]:
        path.write_text(head + f"faults: [{{op: get_stats, kind: timeout, {bad}}}]\n")
        with pytest.raises(ScenarioError, match=problem):
            load_scenario(path)
