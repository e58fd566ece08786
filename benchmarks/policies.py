"""Every auto-balloon policy on every built-in scenario, side by side, in the simulator.

Each run starts a fresh world from the scenario (same seed for every policy), runs the
controller for ``--hours`` of simulated time — every ``--interval`` seconds, sooner when the
policy asks for it and the controller's ``fast_interval_seconds`` allows — and measures:

* OOM / crash events (the guest's OOM killer, panics of over-inflated guests, the host's OOM killer);
* guest swap-in (GiB): what the guests had to read back from their own swap;
* host swap (GiB): the peak of guest memory the host swapped out (KVM) or ESXi swapped;
* memory reclaimed (GiB-hours): the balloons' size integrated over time;
* of which without starving (GiB-hours): the same integral less, at every moment, the part of
  each balloon that kept the guest from memory it demanded (what it had to swap, or lost to its
  OOM killer) — memory taken back, not memory taken away;
* spike → memory (p50 / p95, seconds): from a demand spike (demand up by ≥ 1 GiB within a
  minute) to the VM having that demand's worth of memory (0 when it already had);
* minimum host free (GiB);
* changes per VM-hour, and direction reversals: a VM's target moved one way and then the other
  within ten minutes; *unjustified* when a lower followed a raise although its use had not
  fallen, or a raise followed a lower although its use had not risen (the use the controller
  saw, compared with a 64 MiB tolerance).

Each scenario's peak demand (its VMs' workloads at their highest at once, as the scenario asks
them whether or not a VM is still running to ask — a VM killed early does not lighten the
scenario —, plus the host's and the VMs' overheads) is compared with the host's memory plus its
swap: where it exceeds them no policy can keep every VM, and the goals ask for fewer kills than
every baseline instead of none.

The controller runs on the public API with its default settings and no per-VM hints; the host
is given to it explicitly (its size, overhead and reserve, from the simulator). Retries of the
session sleep in simulated time; a round that fails (a sweep that timed out after its retries)
is counted and the controller tries again when its next round is due.

Run (the full horizon, writing the table into docs/policies.md and plots into docs/img/)::

    python benchmarks/policies.py --hours 12 --seeds 3 --generated 12 --generated-hours 3 --write-docs
    python benchmarks/policies.py --hours 12 --seeds 3             # every scenario with 3 seeds
    python benchmarks/policies.py --only-generated --generated 30 --hours 3   # 30 generated ones
    python benchmarks/policies.py --hours 3 --policy-option surge_fraction=0.8   # an experiment

``--policy-option KEY=VALUE`` sets one of the ``hvballoon`` policy's own options for an
experiment (the baselines run as published); it is refused with ``--write-docs``: the docs'
tables are the policy's defaults.

A short run prints the table only: ``python benchmarks/policies.py --hours 1.5``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hvballoon.errors import HVBalloonError  # noqa: E402
from hvballoon.fake.catalog import load_scenario  # noqa: E402
from hvballoon.fake.record import record  # noqa: E402
from hvballoon.fake.scenario import Flavor, Scenario, builtin_scenarios  # noqa: E402
from hvballoon.fake.waves import FLAVORS, WAVE_CLASS, WaveClass, parse_wave_class, wave_facts, wave_scenario  # noqa: E402
from hvballoon.fake.world import World  # noqa: E402
from hvballoon.policy import Policy  # noqa: E402
from hvballoon.policy.simulated import simulated_controller, simulated_round  # noqa: E402

GiB = 1024**3
MiB = 1024**2
POLICIES = ("static", "mom", "proxmox", "hvballoon")
BASELINES = ("mom", "proxmox")
#: Scenarios whose point is a burst of demand (the "≤ 10 % of the best baseline's swap" goal):
#: seed-spike and every wave scenario (built-in or generated).
SPIKE_SCENARIOS = ("seed-spike",)
#: The calm scenarios (at most 6 changes per VM-hour).
CALM_SCENARIOS = ("seed", "dense")
CRASH_KINDS = ("oom", "panic", "host_oom", "crashed")
REVERSAL_SECONDS = 600.0
REVERSAL_TOLERANCE_BYTES = 64 * MiB
MAX_CHANGES_PER_VM_HOUR = 6.0
MARK_START = "<!-- benchmark results: start -->"
MARK_END = "<!-- benchmark results: end -->"


@dataclass
class Result:
    scenario: str
    policy: str
    hours: float
    seed: int = 0
    oom_events: int = 0
    kills: dict[str, int] = field(default_factory=dict)
    guest_swap_in_gib: float = 0.0
    host_swap_gib: float = 0.0
    reclaimed_gib_hours: float = 0.0
    reclaimed_unstarved_gib_hours: float = 0.0
    spike_p50_s: float | None = None
    spike_p95_s: float | None = None
    spikes: int = 0
    min_host_free_gib: float = 0.0
    changes: int = 0
    vm_hours: float = 0.0
    reversals: int = 0
    unjustified_reversals: int = 0
    failed_rounds: int = 0
    rounds: int = 0
    peak_demand_gib: float = 0.0
    host_capacity_gib: float = 0.0
    guest_swap_by_vm: dict[str, float] = field(default_factory=dict)
    policy_options: dict[str, object] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def changes_per_vm_hour(self) -> float:
        return self.changes / self.vm_hours if self.vm_hours else 0.0

    @property
    def exceeds_host(self) -> bool:
        """The scenario's peak demand exceeds the host's memory plus its swap."""
        return self.peak_demand_gib > self.host_capacity_gib


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def spike_latencies(
    t: list[float], demand: list[int], current: list[int], *, rise: int = GiB, window: float = 60.0
) -> list[float]:
    """Seconds from each demand spike to the VM having the spike's peak demand in memory."""
    out: list[float] = []
    n = len(t)
    i = 0
    back = 0
    while i < n:
        while t[i] - t[back] > window:
            back += 1
        if demand[i] - min(demand[back : i + 1]) >= rise:
            # the spike began where demand was last at its low before the rise
            low = min(demand[back : i + 1])
            start = max(k for k in range(back, i + 1) if demand[k] == low)
            # the spike's peak: the most demand in the ten minutes after it began
            end = start
            while end + 1 < n and t[end + 1] - t[start] <= 600:
                end += 1
            peak = max(demand[start : end + 1])
            arrived = next((k for k in range(start, n) if current[k] >= peak), None)
            out.append((t[arrived] if arrived is not None else t[-1]) - t[start])
            # skip to the end of this spike's rise
            i = end + 1
            back = i
            continue
        i += 1
    return out


def reversals(moves: list[tuple[float, int, int]]) -> tuple[int, int]:
    """(reversals, unjustified ones) among one VM's applied moves ``(time, direction, use)``.

    >>> reversals([(0, +1, 5 * GiB), (100, -1, 5 * GiB), (2000, +1, 5 * GiB)])
    (1, 1)
    >>> reversals([(0, -1, 5 * GiB), (100, +1, 6 * GiB)])   # its use rose: justified
    (1, 0)
    """
    total = unjustified = 0
    for (t0, d0, u0), (t1, d1, u1) in itertools.pairwise(moves):
        if d0 == d1 or t1 - t0 >= REVERSAL_SECONDS:
            continue
        total += 1
        if d1 < 0 and u1 >= u0 - REVERSAL_TOLERANCE_BYTES:
            unjustified += 1  # lowered after a raise although its use had not fallen
        elif d1 > 0 and u1 <= u0 + REVERSAL_TOLERANCE_BYTES:
            unjustified += 1  # raised after a lower although its use had not risen
    return total, unjustified


def _integral(t: list[float], values: list[float]) -> float:
    """GiB-hours of a byte series sampled at times ``t`` (left Riemann sum)."""
    return sum(values[k] * (t[k + 1] - t[k]) for k in range(len(t) - 1)) / (GiB * 3600)


def _scenario(scenario: str | Scenario) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def run_one(
    scenario: str | Scenario,
    policy: str | Policy,
    *,
    hours: float,
    interval: float = 10.0,
    every: float = 10.0,
    seed: int | None = None,
    fast_interval: float | None = None,
    policy_options: dict[str, object] | None = None,
) -> Result:
    """One policy on one scenario (a built-in's name, a file, or a :class:`Scenario`);
    ``seed`` replaces the scenario's own (random walks, fault draws); ``policy_options`` are the
    policy's own (:attr:`ControllerSettings.policy_options`)."""
    started = time.perf_counter()
    spec = _scenario(scenario)
    name = policy if isinstance(policy, str) else policy.name
    world = World(spec, seed=seed)
    recorder = record(world, every=every)
    host = world.host
    result = Result(spec.name, name, hours, seed=world.seed, policy_options=dict(policy_options or {}))
    host_swap_peak = 0
    moves: dict[str, list[tuple[float, int, int]]] = {}
    end = hours * 3600.0
    with simulated_controller(
        world,
        policy,
        interval_seconds=interval,
        fast_interval_seconds=fast_interval,
        # the baselines run as published: their own rules, without hvballoon's guard rails
        respect_guard_rails=name not in BASELINES,
        policy_options=policy_options or {},
    ) as ctl:
        while world.now < end - 1e-9:
            # a sweep that failed after its retries: the next round comes when it is due (what
            # the controller raised while the sweep hung still counts)
            began = world.now
            decisions, read, wait = simulated_round(world, ctl)
            result.failed_rounds += not read
            result.rounds += 1
            for d in decisions:
                if d.applied:
                    result.changes += 1
                    direction = 1 if d.action == "raise" else -1
                    moves.setdefault(d.vm_id, []).append(
                        (began, direction, int(d.inputs.get("used_bytes") or 0))
                    )
            swapped = sum(g.host_swapped_bytes for g in world.guests.values())
            host_swap_peak = max(host_swap_peak, swapped)
            world.advance(max(0.0, min(wait, end - world.now)))
    data = recorder.to_data()
    t = data["t"]
    crashes = [e for e in world.events if e["kind"] in CRASH_KINDS]
    result.oom_events = len(crashes)
    for e in crashes:
        result.kills[e["kind"]] = result.kills.get(e["kind"], 0) + 1
    result.guest_swap_by_vm = {g.label: g.swap_in_bytes / GiB for g in world.guests.values()}
    result.guest_swap_in_gib = sum(result.guest_swap_by_vm.values())
    result.host_swap_gib = host_swap_peak / GiB
    vms = list(data["vms"].values())
    running = [sum(1 for v in vms if v["demand_bytes"][k] > 0) for k in range(len(t))]
    result.vm_hours = _integral(t, [n * GiB for n in running])
    for series in moves.values():
        total, unjustified = reversals(series)
        result.reversals += total
        result.unjustified_reversals += unjustified
    balloon_total = [sum(v["balloon_bytes"][k] for v in vms) for k in range(len(t))]
    result.reclaimed_gib_hours = _integral(t, balloon_total)
    # the part of a balloon that kept its guest from demanded memory is not counted here
    unstarved = [
        sum(
            max(0.0, v["balloon_bytes"][k] - max(0.0, v["demand_bytes"][k] - v["current_bytes"][k]))
            for v in vms
        )
        for k in range(len(t))
    ]
    result.reclaimed_unstarved_gib_hours = _integral(t, unstarved)
    latencies: list[float] = []
    for v in data["vms"].values():
        latencies += spike_latencies(t, v["demand_bytes"], v["current_bytes"])
    result.spikes = len(latencies)
    result.spike_p50_s = _percentile(latencies, 0.50)
    result.spike_p95_s = _percentile(latencies, 0.95)
    result.min_host_free_gib = min(data["host"]["free_bytes"]) / GiB
    overheads = host.overhead_bytes + world.physics.vm_overhead * len(vms)
    # what the workloads ask at their highest at once: as the run saw it, or as the scenario's
    # own figures give it where that is more (a VM its host's OOM killer took early demands
    # nothing in the run, yet the scenario asked for it)
    seen = max(sum(v["demand_bytes"][k] for v in vms) for k in range(len(t)))
    asked = wave_facts(spec, hours=hours).peak_demand_bytes
    result.peak_demand_gib = (max(seen, asked) + overheads) / GiB
    result.host_capacity_gib = (host.physical_bytes + host.swap_bytes) / GiB
    swap_total = [sum(v["guest_swap_bytes"][k] for v in vms) / GiB for k in range(len(t))]
    result.series = {
        "t_hours": [x / 3600 for x in t],
        "host_free_gib": [x / GiB for x in data["host"]["free_bytes"]],
        "guest_swapped_gib": swap_total,
        "ballooned_gib": [x / GiB for x in balloon_total],
    }
    result.seconds = time.perf_counter() - started
    return result


def with_deflate_on_oom(spec: Scenario) -> Scenario:
    """The scenario with KVM's deflate-on-OOM (memballoon autodeflate) on for every VM."""
    return spec.model_copy(update={"vms": [v.model_copy(update={"deflate_on_oom": True}) for v in spec.vms]})


def run_all(
    *,
    hours: float,
    scenarios: Iterable[str | Scenario] | None = None,
    policies: tuple[str, ...] = POLICIES,
    interval: float = 10.0,
    seeds: int = 1,
    deflate_on_oom: bool = False,
    jobs: int = 1,
    hvballoon_options: dict[str, object] | None = None,
) -> list[Result]:
    """Every policy on every scenario (built-ins by default), with ``seeds`` seeds each: the
    scenario's own, then the next ones; with ``deflate_on_oom``, every VM has it on. ``jobs``
    runs that many simulations side by side (separate processes; the figures are the same, in
    the same order). ``hvballoon_options``: the ``hvballoon`` policy's own options (an
    experiment; the baselines run as published)."""
    runs = []
    for scenario in scenarios if scenarios is not None else builtin_scenarios():
        spec = _scenario(scenario)
        if deflate_on_oom:
            spec = with_deflate_on_oom(spec)
        for k in range(seeds):
            for policy in policies:
                options = dict(hvballoon_options or {}) if policy == "hvballoon" else {}
                runs.append((spec, policy, hours, interval, spec.seed + k, options))
    if jobs <= 1 or len(runs) <= 1:
        return [_run(r) for r in runs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_run, runs))


def _run(job: tuple[Scenario, str, float, float, int, dict[str, object]]) -> Result:
    spec, policy, hours, interval, seed, options = job
    return run_one(spec, policy, hours=hours, interval=interval, seed=seed, policy_options=options)


def _hvballoon_options(items: list[str]) -> dict[str, object]:
    """``--policy-option``: the ``hvballoon`` policy's own options, checked (a typed error)."""
    from hvballoon.policy.base import get_policy, policy_options
    from hvballoon.policy.options import parse_option_pairs

    options = policy_options("hvballoon", parse_option_pairs(items))
    get_policy("hvballoon", **options)
    return options


def generated(
    count: int, *, first: int = 0, hours: float = 12.0, flavor: Flavor = "kvm", cls: WaveClass = WAVE_CLASS
) -> list[Scenario]:
    """``count`` generated wave scenarios (:func:`hvballoon.fake.waves.wave_scenario`), seeds
    ``first`` … ``first + count - 1``, of the class ``cls``, on the ``flavor``'s hypervisor."""
    return [
        wave_scenario(seed, hours=max(hours, 1.5), flavor=flavor, cls=cls)
        for seed in range(first, first + count)
    ]


def _wave_class(text: str) -> WaveClass:
    """``--wave-class``: the generator's class with the bounds given changed."""
    try:
        return parse_wave_class(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# -- judging --------------------------------------------------------------------------------


def is_spike_scenario(name: str) -> bool:
    return name in SPIKE_SCENARIOS or name.startswith("waves")


def goals(results: list[Result]) -> dict[tuple[str, int], dict[str, bool]]:
    """The goals, per scenario and seed: ``{(scenario, seed): {goal: met}}``."""
    by: dict[tuple[str, int], dict[str, Result]] = {}
    for r in results:
        by.setdefault((r.scenario, r.seed), {})[r.policy] = r
    out: dict[tuple[str, int], dict[str, bool]] = {}
    for key, rs in by.items():
        scenario = key[0]
        ours = rs.get("hvballoon")
        bases = [rs[b] for b in BASELINES if b in rs]
        if ours is None or not bases:
            continue
        best_swap = min(b.guest_swap_in_gib for b in bases)
        most_reclaimed = max(b.reclaimed_unstarved_gib_hours for b in bases)
        exceeds = any(r.exceeds_host for r in rs.values())
        g: dict[str, bool] = {}
        static = rs.get("static")
        if static is not None:
            g["no more OOM / crash than static"] = ours.oom_events <= static.oom_events
        if exceeds:
            fewest = min(b.oom_events for b in bases)
            g["fewer OOM / crash than every baseline"] = ours.oom_events < fewest or ours.oom_events == 0
        else:
            g["no OOM or crash"] = ours.oom_events == 0
        g["guest swap ≤ best baseline's"] = ours.guest_swap_in_gib <= best_swap + 1e-6
        if is_spike_scenario(scenario):
            g["guest swap ≤ 10 % of best baseline's"] = ours.guest_swap_in_gib <= 0.10 * best_swap + 1e-6
        g["reclaims without starving ≥ most aggressive baseline"] = (
            ours.reclaimed_unstarved_gib_hours >= most_reclaimed - 1e-6
        )
        g["no unjustified reversal"] = ours.unjustified_reversals == 0
        if scenario in CALM_SCENARIOS:
            g["≤ 6 changes per VM-hour"] = ours.changes_per_vm_hour <= MAX_CHANGES_PER_VM_HOUR
        if scenario == "dense":
            g["all fourteen VMs without guest swap"] = ours.guest_swap_in_gib < 1e-6
        out[key] = g
    return out


# -- reporting ------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _kills(r: Result) -> str:
    if not r.oom_events:
        return "0"
    parts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(r.kills.items()))
    return f"{r.oom_events} ({parts})"


def overview(results: list[Result], *, descriptions: dict[str, str] | None = None) -> str:
    """The scenarios, their peak demand against the host's memory plus swap."""
    lines = [
        "| scenario | what it shows | peak demand (GiB) | host memory + swap (GiB) | peak exceeds them |",
        "|---|---|---:|---:|---|",
    ]
    seen: set[str] = set()
    for r in results:
        if r.scenario in seen:
            continue
        seen.add(r.scenario)
        peak = max(x.peak_demand_gib for x in results if x.scenario == r.scenario)
        text = (descriptions or {}).get(r.scenario, "")
        exceeds = "**yes**: someone must lose" if peak > r.host_capacity_gib else "no"
        lines.append(f"| `{r.scenario}` | {text} | {peak:.1f} | {r.host_capacity_gib:.0f} | {exceeds} |")
    return "\n".join(lines)


def markdown(results: list[Result], *, command: str, images: dict[str, str] | None = None) -> str:
    lines = [
        f"Measured with `{command}` (simulated time; interval 10 s, rounds every second where the "
        "policy asks for them; the same seed for every policy).",
        "",
    ]
    scenarios: list[tuple[str, int]] = []
    for r in results:
        if (r.scenario, r.seed) not in scenarios:
            scenarios.append((r.scenario, r.seed))
    judged = goals(results)
    shown: set[str] = set()
    for key in scenarios:
        scenario, seed = key
        heading = f"### `{scenario}`" if scenario not in shown else f"#### `{scenario}`, seed {seed}"
        lines += [
            heading,
            "",
            "| policy | OOM / crash | guest swap-in (GiB) | host swap (GiB) | reclaimed (GiB·h) "
            "| of which without starving (GiB·h) | spike → memory p50 / p95 (s) | min host free (GiB) "
            "| changes per VM-hour | reversals (unjustified) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        shown.add(scenario)
        for r in results:
            if (r.scenario, r.seed) != key:
                continue
            spike = f"{_fmt(r.spike_p50_s, 0)} / {_fmt(r.spike_p95_s, 0)}" if r.spikes else "no spike"
            lines.append(
                f"| {r.policy} | {_kills(r)} | {r.guest_swap_in_gib:.2f} | {r.host_swap_gib:.2f} "
                f"| {r.reclaimed_gib_hours:.1f} | {r.reclaimed_unstarved_gib_hours:.1f} | {spike} "
                f"| {r.min_host_free_gib:.1f} | {r.changes_per_vm_hour:.2f} "
                f"| {r.reversals} ({r.unjustified_reversals}) |"
            )
        lines.append("")
        if key in judged:
            met = ", ".join(f"{name}: {'yes' if ok else '**no**'}" for name, ok in judged[key].items())
            lines += [f"Goals for `hvballoon` (seed {seed}): {met}.", ""]
        if images and scenario in images and seed == min(s for n, s in scenarios if n == scenario):
            lines += [f"![{scenario}: host free, guest swap and balloons over time]({images[scenario]})", ""]
    return "\n".join(lines)


def summary(results: list[Result]) -> str:
    """Many scenarios in one table: per goal, on how many of them ours met it; and per policy,
    the totals."""
    judged = goals(results)
    names: list[str] = []
    for g in judged.values():
        for name in g:
            if name not in names:
                names.append(name)
    lines = ["| goal | met on |", "|---|---:|"]
    for name in names:
        applicable = [g[name] for g in judged.values() if name in g]
        lines.append(f"| {name} | {sum(applicable)} / {len(applicable)} |")
    allmet = sum(all(g.values()) for g in judged.values())
    lines.append(f"| **every goal** | **{allmet} / {len(judged)}** |")
    lines += [
        "",
        "| policy | OOM / crash (scenarios with any) | guest swap-in (GiB) | reclaimed without starving "
        "(GiB·h) | changes per VM-hour |",
        "|---|---:|---:|---:|---:|",
    ]
    for policy in POLICIES:
        rs = [r for r in results if r.policy == policy]
        if not rs:
            continue
        kills = sum(r.oom_events for r in rs)
        hit = sum(1 for r in rs if r.oom_events)
        vmh = sum(r.vm_hours for r in rs)
        rate = sum(r.changes for r in rs) / vmh if vmh else 0.0
        lines.append(
            f"| {policy} | {kills} ({hit}) | {sum(r.guest_swap_in_gib for r in rs):.1f} "
            f"| {sum(r.reclaimed_unstarved_gib_hours for r in rs):.0f} | {rate:.2f} |"
        )
    failed = [f"`{s}` (seed {seed}): {', '.join(n for n, ok in g.items() if not ok)}"
              for (s, seed), g in judged.items() if not all(g.values())]  # fmt: skip
    if failed:
        lines += ["", "Where a goal was missed:", ""] + [f"- {x}" for x in failed]
    return "\n".join(lines)


def plot(results: list[Result], folder: Path) -> dict[str, str]:
    """One PNG per scenario (its first seed); returns ``{scenario: path relative to docs/}``
    (empty without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    scenarios = sorted({r.scenario for r in results})
    for scenario in scenarios:
        first = min(r.seed for r in results if r.scenario == scenario)
        fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
        for r in results:
            if r.scenario != scenario or r.seed != first:
                continue
            s = r.series
            axes[0].plot(s["t_hours"], s["host_free_gib"], label=r.policy, linewidth=1)
            axes[1].plot(s["t_hours"], s["guest_swapped_gib"], label=r.policy, linewidth=1)
            axes[2].plot(s["t_hours"], s["ballooned_gib"], label=r.policy, linewidth=1)
        axes[0].set_ylabel("host free (GiB)")
        axes[1].set_ylabel("guest swap (GiB)")
        axes[2].set_ylabel("ballooned (GiB)")
        axes[2].set_xlabel("hours")
        axes[0].legend(loc="upper right", fontsize="small")
        axes[0].set_title(f"{scenario}: policies side by side")
        fig.tight_layout()
        name = f"policies-{scenario}.png"
        fig.savefig(folder / name, dpi=80)
        plt.close(fig)
        out[scenario] = f"img/{name}"
    return out


def write_docs(text: str, page: Path) -> None:
    content = page.read_text("utf-8")
    head, sep, rest = content.partition(MARK_START)
    _, sep2, tail = rest.partition(MARK_END)
    if not sep or not sep2:
        raise SystemExit(f"{page} has no {MARK_START} … {MARK_END} section")
    page.write_text(f"{head}{MARK_START}\n\n{text}\n{MARK_END}{tail}", "utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours per run (default 12)")
    parser.add_argument("--interval", type=float, default=10.0, help="controller interval in seconds")
    parser.add_argument(
        "--scenario", action="append", help="only this scenario (repeatable; a name or a file)"
    )
    parser.add_argument("--policy", action="append", choices=POLICIES, help="only this policy (repeatable)")
    parser.add_argument("--seeds", type=int, default=1, help="run each scenario with this many seeds")
    parser.add_argument(
        "--generated", type=int, default=0, metavar="N", help="also N generated wave scenarios (seeds 0..N-1)"
    )
    parser.add_argument("--first", type=int, default=0, help="the first generated scenario's seed")
    parser.add_argument(
        "--generated-hours",
        type=float,
        metavar="H",
        help="simulated hours per generated run (default: --hours)",
    )
    parser.add_argument(
        "--generated-flavor",
        choices=FLAVORS,
        default="kvm",
        help="the hypervisor the generated scenarios are drawn for (default kvm)",
    )
    parser.add_argument(
        "--wave-class",
        type=_wave_class,
        default=WAVE_CLASS,
        metavar="FIELD=LOW:HIGH,...",
        help="draw the generated scenarios from another class: bounds of hvballoon.fake.waves.WaveClass "
        "changed, e.g. rise_seconds=1:4,surge_fraction=0.5:0.85",
    )
    parser.add_argument(
        "--policy-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one of the hvballoon policy's own options for an experiment, e.g. surge_fraction=0.8 "
        "(repeatable; not with --write-docs)",
    )
    parser.add_argument("--only-generated", action="store_true", help="no built-in scenario")
    parser.add_argument(
        "--deflate-on-oom",
        action="store_true",
        help="every VM with KVM's deflate-on-OOM on (same for every policy)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="simulations run side by side (processes; same figures)"
    )
    parser.add_argument("--json", type=Path, help="also write every result (without series) to this file")
    parser.add_argument(
        "--write-docs", action="store_true", help="write docs/policies.md's table and docs/img/"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs is a number of processes, at least 1, got {args.jobs}")
    if args.write_docs and (args.generated_flavor != "kvm" or args.wave_class != WAVE_CLASS):
        parser.error(
            "--write-docs writes the tables of docs/policies.md for KVM and the generator's own class: "
            "leave --generated-flavor and --wave-class out"
        )
    if args.write_docs and args.policy_option:
        parser.error(
            "--write-docs writes the tables of docs/policies.md for the policy's defaults: leave --policy-option out"
        )
    try:
        hvballoon_options = _hvballoon_options(args.policy_option)
    except HVBalloonError as e:
        parser.error(f"--policy-option: {e.message}")
    if hvballoon_options and "hvballoon" not in (args.policy or POLICIES):
        parser.error("--policy-option sets the hvballoon policy's options: run it (--policy hvballoon)")
    policies = tuple(args.policy or POLICIES)
    gen_hours = args.generated_hours or args.hours
    try:  # drawn before anything runs: a class no scenario can be drawn from is refused at once
        drawn = generated(
            args.generated,
            first=args.first,
            hours=gen_hours,
            flavor=args.generated_flavor,
            cls=args.wave_class,
        )
    except ValueError as e:
        parser.error(f"--wave-class: {e}")
    builtins: list[str | Scenario] = [] if args.only_generated else list(args.scenario or builtin_scenarios())
    results = run_all(
        hours=args.hours,
        scenarios=builtins,
        policies=policies,
        interval=args.interval,
        seeds=args.seeds,
        deflate_on_oom=args.deflate_on_oom,
        jobs=args.jobs,
        hvballoon_options=hvballoon_options,
    )
    many: list[Result] = []
    if drawn:
        many = run_all(
            hours=gen_hours,
            scenarios=drawn,
            policies=policies,
            interval=args.interval,
            deflate_on_oom=args.deflate_on_oom,
            jobs=args.jobs,
            hvballoon_options=hvballoon_options,
        )
    given = list(sys.argv[1:] if argv is None else argv)
    for option in ("--json", "--jobs"):  # where the figures are written, or how many at once,
        if option in given:  # does not change them
            del given[given.index(option) : given.index(option) + 2]
    command = " ".join(["python benchmarks/policies.py", *given])
    parts = []
    if results:
        descriptions = {r.scenario: load_scenario(r.scenario).description.split(":")[0] for r in results
                        if r.scenario in builtin_scenarios()}  # fmt: skip
        images = plot(results, ROOT / "docs" / "img") if args.write_docs else {}
        parts += [
            overview(results, descriptions=descriptions),
            "",
            markdown(results, command=command, images=images),
        ]
        if args.seeds > 1:
            parts += [f"### Every built-in scenario with {args.seeds} seeds", "", summary(results), ""]
    if many:
        scenarios = drawn
        facts = {s.name: wave_facts(s, hours=gen_hours) for s in scenarios}
        parts += [
            f"### {args.generated} generated wave scenarios",
            "",
            f"Measured with `{command}` ({gen_hours:g} simulated hours each): seeds "
            f"{args.first}–{args.first + args.generated - 1}, "
            + ", ".join(
                f"{sum(1 for f in facts.values() if f.capacity == c)} {c}" for c in ("roomy", "tight", "over")
            )
            + f", {sum(1 for s in scenarios if s.faults)} with faults.",
            "",
            summary(many),
        ]
    text = "\n".join(parts)
    print(text)
    print(f"({sum(r.seconds for r in results + many):.1f} s of computing)", file=sys.stderr)
    if args.json:
        rows = []
        for r in results + many:
            row = asdict(r)
            row.pop("series")
            rows.append(row)
        args.json.write_text(json.dumps(rows, indent=1), "utf-8")
    if args.write_docs:
        write_docs(text, ROOT / "docs" / "policies.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
