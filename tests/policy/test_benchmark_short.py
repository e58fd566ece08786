"""The policy benchmark on a shortened horizon (72 simulated minutes: past every scenario's first
spike and first wave), asserting the goals of issue 16 that hold there, every policy with the
same seed. The full run, with more seeds and generated wave scenarios, is documented in
docs/policies.md with its command."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_policies", ROOT / "benchmarks" / "policies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(bench: ModuleType) -> list:  # type: ignore[type-arg]
    return bench.run_all(hours=1.2)  # type: ignore[no-any-return]


def test_every_scenario_ran(bench: ModuleType, results: list) -> None:  # type: ignore[type-arg]
    from hvballoon.fake.scenario import builtin_scenarios

    assert {r.scenario for r in results} == set(builtin_scenarios())
    assert {"seed", "seed-spike", "java", "dense", "hyperv-dm", "esxi-limits"} <= set(builtin_scenarios())
    assert {"waves-roomy", "waves-tight", "waves-over"} <= set(builtin_scenarios())
    assert {r.policy for r in results} == {"static", "mom", "proxmox", "hvballoon"}


def test_ours_never_leaves_a_host_worse_off_than_no_ballooning(bench: ModuleType, results: list) -> None:  # type: ignore[type-arg]
    for scenario, goals in bench.goals(results).items():
        assert goals["no more OOM / crash than static"], scenario


def test_ours_causes_no_oom_or_crash_where_the_host_could_hold_the_demand(
    bench: ModuleType,
    results: list,  # type: ignore[type-arg]
) -> None:
    judged = bench.goals(results)
    for (scenario, _seed), goals in judged.items():
        if "no OOM or crash" in goals:
            assert goals["no OOM or crash"], scenario
        else:
            assert goals["fewer OOM / crash than every baseline"], scenario
    # waves-over is the one whose peak exceeds the host's memory plus swap
    assert [s for (s, _), g in judged.items() if "no OOM or crash" not in g] == ["waves-over"]


#: Where the policy deliberately lowers within the calm time: on ``waves-tight`` the sweeps hang
#: while each wave rises, so the policy deals the host's reserve out to every VM whose headroom
#: was cut, and when the surges and the page cache then take the host below its floor it cuts
#: some of them again before the host swaps and kills a VM (docs/policies.md says so).
FLOOR_RESCUES = ("waves-tight",)


def test_calm_hands(bench: ModuleType, results: list) -> None:  # type: ignore[type-arg]
    judged = bench.goals(results)
    for (scenario, _seed), goals in judged.items():
        if scenario not in FLOOR_RESCUES:
            assert goals["no unjustified reversal"], scenario
        if scenario in ("seed", "dense"):
            assert goals["≤ 6 changes per VM-hour"], scenario
    # the exception is not a free pass: there, the policy has no kill at all
    for (scenario, _seed), goals in judged.items():
        if scenario in FLOOR_RESCUES:
            assert goals["no OOM or crash"], scenario


def test_ours_swaps_no_more_than_the_best_baseline(bench: ModuleType, results: list) -> None:  # type: ignore[type-arg]
    for (scenario, _seed), goals in bench.goals(results).items():
        assert goals["guest swap ≤ best baseline's"], scenario
        if "guest swap ≤ 10 % of best baseline's" not in goals:
            continue
        if scenario != "waves-over":
            assert goals["guest swap ≤ 10 % of best baseline's"], scenario
        else:
            # a peak beyond memory plus swap: the surging guests swap for the seconds the
            # balloon takes to deflate, and at this horizon the baselines have swapped little
            # yet (over 12 h ours is under 10 % of theirs, docs/policies.md); two thirds holds
            rs = {r.policy: r for r in results if (r.scenario, r.seed) == (scenario, _seed)}
            best = min(rs[b].guest_swap_in_gib for b in bench.BASELINES)
            assert rs["hvballoon"].guest_swap_in_gib <= 2 * best / 3, scenario
    assert {
        s for (s, _), g in bench.goals(results).items() if "guest swap ≤ 10 % of best baseline's" in g
    } >= {
        "seed-spike",
        "waves-roomy",
        "waves-tight",
        "waves-over",
    }


def test_dense_runs_all_fourteen_vms_without_guest_swap(results: list) -> None:  # type: ignore[type-arg]
    ours = next(r for r in results if r.scenario == "dense" and r.policy == "hvballoon")
    assert len(ours.guest_swap_by_vm) == 14
    assert ours.guest_swap_in_gib == 0


def test_ours_reclaims_at_least_as_much_as_the_most_aggressive_baseline(
    bench: ModuleType,
    results: list,  # type: ignore[type-arg]
) -> None:
    by = {(r.scenario, r.policy): r for r in results}
    for (scenario, _seed), goals in bench.goals(results).items():
        if scenario == "esxi-limits":
            # ESXi limits keep half their plausible surge (a raised limit is applied only at
            # ESXi's next reallocation), so ours reclaims nothing there; the baselines reclaim
            # only the balloon of a limit set before they started, which they raise in steps
            most = max(by[(scenario, b)].reclaimed_unstarved_gib_hours for b in bench.BASELINES)
            assert most < 0.05 and by[(scenario, "static")].reclaimed_unstarved_gib_hours > 1
            continue
        assert goals["reclaims without starving ≥ most aggressive baseline"], scenario


def test_reclaim_without_starving_never_exceeds_reclaim(results: list) -> None:  # type: ignore[type-arg]
    for r in results:
        assert 0 <= r.reclaimed_unstarved_gib_hours <= r.reclaimed_gib_hours + 1e-9, (r.scenario, r.policy)
        if r.guest_swap_in_gib == 0 and r.oom_events == 0 and r.scenario != "hyperv-dm":
            # a guest that never went short of memory was never starved by its balloon
            assert r.reclaimed_unstarved_gib_hours == pytest.approx(r.reclaimed_gib_hours), r.scenario


def test_markdown_table(bench: ModuleType, results: list) -> None:  # type: ignore[type-arg]
    text = bench.markdown(results, command="python benchmarks/policies.py --hours 1.2")
    assert "### `seed-spike`" in text and "| hvballoon |" in text
    assert "without starving" in text
    assert text.count("| policy |") == len({r.scenario for r in results})
    assert "changes per VM-hour" in text and "reversals (unjustified)" in text


def test_spike_latency_measure(bench: ModuleType) -> None:
    gib = 2**30
    t = [float(x * 10) for x in range(12)]
    demand = [1 * gib] * 3 + [4 * gib] * 9
    # the memory arrives 30 s after the demand began to rise (at t=20)
    current = [3 * gib] * 5 + [5 * gib] * 7
    assert bench.spike_latencies(t, demand, current) == [30.0]
    assert bench.spike_latencies(t, demand, [5 * gib] * 12) == [0.0]


def test_side_by_side_runs_give_the_same_figures(bench: ModuleType) -> None:
    one = bench.run_all(hours=0.2, scenarios=["seed"], policies=("static", "hvballoon"))
    two = bench.run_all(hours=0.2, scenarios=["seed"], policies=("static", "hvballoon"), jobs=2)
    strip = [{k: v for k, v in vars(r).items() if k != "seconds"} for r in one]
    assert [{k: v for k, v in vars(r).items() if k != "seconds"} for r in two] == strip
    assert [r.policy for r in two] == ["static", "hvballoon"]


def test_generated_scenarios_are_drawn_for_the_flavor_asked(bench: ModuleType) -> None:
    esxi = bench.generated(2, first=4, hours=3, flavor="esxi")
    assert [s.name for s in esxi] == ["waves-4-esxi", "waves-5-esxi"]
    assert {s.flavor for s in bench.generated(2, hours=3)} == {"kvm"}
    # an unknown flavor is refused by the command line, before anything runs
    with pytest.raises(SystemExit):
        bench.main(["--only-generated", "--generated", "1", "--generated-flavor", "xen"])
    # the docs' tables are KVM's: another flavor's figures are not written over them
    with pytest.raises(SystemExit):
        bench.main(["--only-generated", "--generated", "1", "--generated-flavor", "esxi", "--write-docs"])


def test_generated_scenarios_are_drawn_from_the_class_asked(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    from hvballoon.fake.waves import parse_wave_class

    fast = parse_wave_class("rise_seconds=1:2")
    rises = {p.rise for s in bench.generated(2, hours=3, cls=fast) for p in _spikes(s)}
    assert rises and all(1.0 <= r <= 2.0 for r in rises)
    assert any(r > 2.0 for s in bench.generated(2, hours=3) for r in {p.rise for p in _spikes(s)})
    # a malformed class is refused by the command line, before anything runs, saying why
    with pytest.raises(SystemExit) as e:
        bench.main(["--only-generated", "--generated", "1", "--wave-class", "rise=1:2"])
    assert e.value.code == 2 and "unknown field 'rise'" in capsys.readouterr().err
    # the docs' tables are the generator's own class
    with pytest.raises(SystemExit):
        bench.main(
            ["--only-generated", "--generated", "1", "--wave-class", "rise_seconds=1:2", "--write-docs"]
        )


@pytest.mark.parametrize(
    ("wave_class", "says"),
    [
        ("rise_seconds=0.04:0.04", "rise_seconds must be at least 0.1"),
        ("overcommit=100:100", "overcommit must be from 1 to 4"),
        ("first_wave_seconds=1e9:1e9", "--wave-class: first_wave_seconds: the first wave comes at 1e+09 s"),
    ],
)
def test_a_wave_class_no_scenario_can_be_drawn_from_is_refused_before_anything_runs(
    bench: ModuleType, capsys: pytest.CaptureFixture[str], wave_class: str, says: str
) -> None:
    with pytest.raises(SystemExit) as e:
        bench.main(["--generated", "1", "--hours", "3", "--wave-class", wave_class])
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and "Traceback" not in err, err


def _spikes(s: Any) -> list[Any]:
    """The spike parts of a scenario's workloads."""
    from hvballoon.fake.workloads import components

    return [c.params for i, v in enumerate(s.vms) for c in components(i, v.workload.kind, v.workload.params)
            if c.kind == "spike"]  # fmt: skip


def test_the_peak_demand_counts_a_vm_killed_before_it_peaked(bench: ModuleType) -> None:
    from hvballoon.fake.waves import wave_facts, wave_scenario
    from hvballoon.units import GiB

    # an over-committed generated host whose OOM killer takes VMs before their workloads peak
    # when nothing balloons: the scenario still asks for those VMs' demand
    spec = wave_scenario(7, hours=1.5)
    r = bench.run_one(spec, "static", hours=1.0)
    assert r.kills.get("host_oom", 0) >= 1
    from hvballoon.fake.world import World

    overheads = spec.host.overhead + World(spec).physics.vm_overhead * len(spec.vms)
    asked = (wave_facts(spec, hours=1.0).peak_demand_bytes + overheads) / GiB
    assert r.peak_demand_gib >= asked


def test_policy_options_are_an_experiment_on_the_hvballoon_policy_only(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    def rows(*extra: str) -> list[dict[str, Any]]:
        out = tmp_path / "r.json"
        args = ["--scenario", "seed", "--policy", "hvballoon", "--policy", "mom", "--hours", "0.1"]
        assert bench.main([*args, *extra, "--json", str(out)]) == 0
        return json.loads(out.read_text())  # type: ignore[no-any-return]

    default = {r["policy"]: r for r in rows()}
    tight = {r["policy"]: r for r in rows("--policy-option", "surge_fraction=0.1")}
    assert tight["hvballoon"]["policy_options"] == {"surge_fraction": 0.1}
    assert default["hvballoon"]["policy_options"] == {} and tight["mom"]["policy_options"] == {}
    # less headroom kept for a surge: more memory taken back; the baseline runs as published
    assert tight["hvballoon"]["reclaimed_gib_hours"] > default["hvballoon"]["reclaimed_gib_hours"]
    assert tight["mom"]["reclaimed_gib_hours"] == default["mom"]["reclaimed_gib_hours"]
    assert "--policy-option surge_fraction=0.1" in capsys.readouterr().out  # the command measured
    # refused before anything runs: with --write-docs, malformed, or without the hvballoon policy
    for argv, said in (
        (["--policy-option", "surge_fraction=0.8", "--write-docs"], "leave --policy-option out"),
        (["--policy-option", "calm=1m"], "unknown option 'calm'"),
        (["--policy-option", "surge_fraction=2"], "surge_fraction"),
        (["--policy-option", "surge_fraction"], "takes KEY=VALUE"),
        (["--policy", "mom", "--policy-option", "surge_fraction=0.5"], "run it (--policy hvballoon)"),
    ):
        with pytest.raises(SystemExit) as e:
            bench.main(["--hours", "0.1", *argv])
        assert e.value.code == 2 and said in capsys.readouterr().err


def test_on_hyperv_ours_raises_the_buffers_of_a_wave_and_loses_fewer_vms_than_no_ballooning(
    bench: ModuleType,
) -> None:
    """Generated Hyper-V waves: MoM and Proxmox move nothing on Dynamic Memory VMs; ours raises
    the buffers of a surging VM's siblings (docs/policies.md, 16 and 48 seeds)."""
    from hvballoon.fake.waves import wave_scenario

    for seed in (1, 11):  # a roomy host and a tight one
        spec = wave_scenario(seed, flavor="hyperv", hours=3)
        static = bench.run_one(spec, "static", hours=1.2)
        ours = bench.run_one(spec, "hvballoon", hours=1.2)
        assert ours.changes > 0 and ours.unjustified_reversals == 0
        assert ours.oom_events < static.oom_events, (seed, ours.oom_events, static.oom_events)


def test_on_esxi_fast_rising_waves_ours_loses_no_more_vms_than_no_ballooning(bench: ModuleType) -> None:
    """Surges that rise within 1-4 s on ESXi, where a raised limit takes effect only at ESXi's
    next reallocation: limits keep half their plausible surge (docs/policies.md, sixteen seeds;
    cut like balloons, ours had 4 and 6 kills on these two)."""
    from hvballoon.fake.waves import parse_wave_class, wave_scenario

    fast = parse_wave_class("rise_seconds=1:4")
    for seed in (110, 113):
        spec = wave_scenario(seed, flavor="esxi", hours=3, cls=fast)
        static = bench.run_one(spec, "static", hours=1.2)
        ours = bench.run_one(spec, "hvballoon", hours=1.2)
        assert static.oom_events > 0
        assert ours.oom_events <= static.oom_events, (seed, ours.oom_events, static.oom_events)
