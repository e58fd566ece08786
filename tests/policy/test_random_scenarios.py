"""The random-scenario probe's invariants on a handful of seeds (every flavour, faults, operator
events, per-VM settings, a dry run), every policy: only typed errors, targets within the VM's
bounds and settings, decisions and hypervisor moves one to one, dry runs that change nothing,
a release that gives back what was lowered. The full probe is in docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
#: seeds of every flavour, with faults, operator events, settings and one dry run (seed 9)
SEEDS = (1, 7, 9, 10, 19, 21)


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_random", ROOT / "benchmarks" / "random_scenarios.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_seeds_cover_what_the_probe_draws(probe: ModuleType) -> None:
    from hvballoon.fake.randomized import random_scenario

    drawn = [random_scenario(s, hours=5 / 60) for s in SEEDS]
    assert {s.flavor for s in drawn} == {"kvm", "esxi", "hyperv"}
    assert any(probe.draw_settings(s, seed)[1] for s, seed in zip(drawn, SEEDS, strict=True))  # a dry run
    assert any(probe.draw_settings(s, seed)[0] for s, seed in zip(drawn, SEEDS, strict=True))  # settings


@pytest.mark.parametrize("seed", SEEDS)
def test_every_policy_keeps_the_invariants(probe: ModuleType, seed: int) -> None:
    for policy in probe.POLICIES:
        run = probe.run_one(seed, policy, minutes=5)
        assert run.violations == [], (seed, policy)


def test_the_probe_runs_only_the_flavour_asked_and_draws_idle_held_worlds(probe: ModuleType) -> None:
    """``--flavor esxi`` keeps the ESXi seeds only; ``--idle-held`` runs them on the worlds
    random_scenario draws with that option, invariants kept."""
    from hvballoon.fake.randomized import random_scenario

    esxi = [s for s in range(12) if random_scenario(s).flavor == "esxi"]
    runs = probe.probe(range(12), minutes=2, policies=("hvballoon",), flavor="esxi", idle_held=True)
    assert [r.seed for r in runs] == esxi and esxi
    assert all(r.flavor == "esxi" and r.violations == [] for r in runs)
    assert any(v.idle_held for s in esxi for v in random_scenario(s, hours=2 / 60, idle_held=True).vms)


def test_the_comparison_with_static_tells_the_kills_of_vms_an_operator_capped(probe: ModuleType) -> None:
    """A VM an operator's ceiling holds below its size dies of a setting ``static`` never applies:
    the seeds where ``hvballoon`` kills more say how many of its extra kills were such VMs'."""
    ours = probe.Run(7, "hvballoon", kills={"oom": 9}, capped_kills={"a": 6, "b": 1})
    static = probe.Run(7, "static", kills={"oom": 3}, capped_kills={"a": 1, "b": 2})
    even = [probe.Run(8, "hvballoon", kills={"oom": 1}), probe.Run(8, "static", kills={"oom": 1})]
    (worse,) = probe.worse_than_static([ours, static, *even])
    assert worse["seed"] == 7 and worse["hvballoon_more_on_capped_vms"] == 5
