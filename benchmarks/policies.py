"""Every auto-balloon policy on every built-in scenario, side by side, in the simulator.

Each run starts a fresh world from the scenario (same seed for every policy), runs the
controller every ``--interval`` seconds of simulated time for ``--hours``, and measures:

* OOM / crash events (the guest's OOM killer, panics of over-inflated guests, the host's OOM killer);
* guest swap-in (GiB): what the guests had to read back from their own swap;
* host swap (GiB): the peak of guest memory the host swapped out (KVM) or ESXi swapped;
* memory reclaimed (GiB-hours): the balloons' size integrated over time;
* of which without starving (GiB-hours): the same integral less, at every moment, the part of
  each balloon that kept the guest from memory it demanded (what it had to swap, or lost to its
  OOM killer) — memory taken back, not memory taken away;
* spike → memory (p50 / p95, seconds): from a demand spike (demand up by ≥ 1 GiB within a
  minute) to the VM having that demand's worth of memory (0 when it already had);
* minimum host free (GiB).

The controller runs on the public API with its default settings and no per-VM hints; the host
is given to it explicitly (its size, overhead and reserve, from the simulator), as when the
published table was made, rather than read through ``get_host_stats`` each round.

Run (the full horizon, writing the table into docs/policies.md and plots into docs/img/)::

    python benchmarks/policies.py --hours 12 --write-docs

A short run prints the table only: ``python benchmarks/policies.py --hours 1.5``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hvballoon  # noqa: E402
from hvballoon.fake.record import record  # noqa: E402
from hvballoon.fake.scenario import builtin_scenarios, load_scenario  # noqa: E402
from hvballoon.fake.world import World  # noqa: E402
from hvballoon.policy import Controller, ControllerSettings, Policy  # noqa: E402

GiB = 1024**3
POLICIES = ("static", "mom", "proxmox", "hvballoon")
BASELINES = ("mom", "proxmox")
#: Scenarios whose point is a burst of demand (the "≤ 10 % of the best baseline's swap" goal).
SPIKE_SCENARIOS = ("seed-spike",)
CRASH_KINDS = ("oom", "panic", "host_oom", "crashed")
MARK_START = "<!-- benchmark results: start -->"
MARK_END = "<!-- benchmark results: end -->"


@dataclass
class Result:
    scenario: str
    policy: str
    hours: float
    oom_events: int = 0
    guest_swap_in_gib: float = 0.0
    host_swap_gib: float = 0.0
    reclaimed_gib_hours: float = 0.0
    reclaimed_unstarved_gib_hours: float = 0.0
    spike_p50_s: float | None = None
    spike_p95_s: float | None = None
    spikes: int = 0
    min_host_free_gib: float = 0.0
    changes: int = 0
    guest_swap_by_vm: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


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


def _integral(t: list[float], values: list[float]) -> float:
    """GiB-hours of a byte series sampled at times ``t`` (left Riemann sum)."""
    return sum(values[k] * (t[k + 1] - t[k]) for k in range(len(t) - 1)) / (GiB * 3600)


def run_one(
    scenario: str,
    policy: str | Policy,
    *,
    hours: float,
    interval: float = 10.0,
    every: float = 10.0,
) -> Result:
    started = time.perf_counter()
    name = policy if isinstance(policy, str) else policy.name
    world = World(load_scenario(scenario))
    recorder = record(world, every=every)
    host = world.host
    settings = ControllerSettings(
        host_memory_bytes=host.physical_bytes,
        host_overhead_bytes=host.overhead_bytes,
        host_reserve_bytes=host.reserve_bytes,
        interval_seconds=interval,
        # the baselines run as published: their own rules, without hvballoon's guard rails
        respect_guard_rails=name not in BASELINES,
    )
    result = Result(scenario, name, hours)
    host_swap_peak = 0
    with hvballoon.connect(f"fake://{scenario}", world=world) as hv:
        ctl = Controller(hv, policy, settings)
        rounds = max(1, int(hours * 3600 / interval))
        for decisions in ctl.run(rounds=rounds):
            result.changes += sum(d.applied for d in decisions)
            swapped = sum(g.host_swapped_bytes for g in world.guests.values())
            host_swap_peak = max(host_swap_peak, swapped)
        # the last round's interval
        hv.backend.sleep(interval)
    data = recorder.to_data()
    t = data["t"]
    result.oom_events = sum(1 for e in world.events if e["kind"] in CRASH_KINDS)
    result.guest_swap_by_vm = {g.label: g.swap_in_bytes / GiB for g in world.guests.values()}
    result.guest_swap_in_gib = sum(result.guest_swap_by_vm.values())
    result.host_swap_gib = host_swap_peak / GiB
    vms = list(data["vms"].values())
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
    swap_total = [sum(v["guest_swap_bytes"][k] for v in data["vms"].values()) / GiB for k in range(len(t))]
    result.series = {
        "t_hours": [x / 3600 for x in t],
        "host_free_gib": [x / GiB for x in data["host"]["free_bytes"]],
        "guest_swapped_gib": swap_total,
        "ballooned_gib": [x / GiB for x in balloon_total],
    }
    result.seconds = time.perf_counter() - started
    return result


def run_all(
    *,
    hours: float,
    scenarios: list[str] | None = None,
    policies: tuple[str, ...] = POLICIES,
    interval: float = 10.0,
) -> list[Result]:
    out = []
    for scenario in scenarios or builtin_scenarios():
        for policy in policies:
            out.append(run_one(scenario, policy, hours=hours, interval=interval))
    return out


# -- judging --------------------------------------------------------------------------------


def goals(results: list[Result]) -> dict[str, dict[str, bool]]:
    """The headline goals, per scenario: ``{scenario: {goal: met}}``."""
    by: dict[str, dict[str, Result]] = {}
    for r in results:
        by.setdefault(r.scenario, {})[r.policy] = r
    out: dict[str, dict[str, bool]] = {}
    for scenario, rs in by.items():
        ours = rs.get("hvballoon")
        bases = [rs[b] for b in BASELINES if b in rs]
        if ours is None or not bases:
            continue
        best_swap = min(b.guest_swap_in_gib for b in bases)
        most_reclaimed = max(b.reclaimed_gib_hours for b in bases)
        g = {
            "no OOM or crash": ours.oom_events == 0,
            "guest swap ≤ best baseline's": ours.guest_swap_in_gib <= best_swap + 1e-6,
            "reclaims ≥ most aggressive baseline": ours.reclaimed_gib_hours >= most_reclaimed - 1e-6,
        }
        if scenario in SPIKE_SCENARIOS:
            g["guest swap ≤ 10 % of best baseline's"] = ours.guest_swap_in_gib <= 0.10 * best_swap + 1e-6
        if scenario == "dense":
            g["all fourteen VMs without guest swap"] = ours.guest_swap_in_gib < 1e-6
        out[scenario] = g
    return out


# -- reporting ------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(results: list[Result], *, command: str, images: dict[str, str] | None = None) -> str:
    lines = [
        f"Measured with `{command}` (simulated time; interval 10 s; same seed for every policy).",
        "",
    ]
    scenarios: list[str] = []
    for r in results:
        if r.scenario not in scenarios:
            scenarios.append(r.scenario)
    judged = goals(results)
    for scenario in scenarios:
        lines += [
            f"### `{scenario}`",
            "",
            "| policy | OOM / crash | guest swap-in (GiB) | host swap (GiB) | reclaimed (GiB·h) "
            "| of which without starving (GiB·h) | spike → memory p50 / p95 (s) | min host free (GiB) "
            "| changes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results:
            if r.scenario != scenario:
                continue
            spike = f"{_fmt(r.spike_p50_s, 0)} / {_fmt(r.spike_p95_s, 0)}" if r.spikes else "no spike"
            lines.append(
                f"| {r.policy} | {r.oom_events} | {r.guest_swap_in_gib:.2f} | {r.host_swap_gib:.2f} "
                f"| {r.reclaimed_gib_hours:.1f} | {r.reclaimed_unstarved_gib_hours:.1f} | {spike} "
                f"| {r.min_host_free_gib:.1f} | {r.changes} |"
            )
        lines.append("")
        if scenario in judged:
            met = ", ".join(f"{name}: {'yes' if ok else '**no**'}" for name, ok in judged[scenario].items())
            lines += [f"Goals for `hvballoon`: {met}.", ""]
        if images and scenario in images:
            lines += [f"![{scenario}: host free, guest swap and balloons over time]({images[scenario]})", ""]
    return "\n".join(lines)


def plot(results: list[Result], folder: Path) -> dict[str, str]:
    """One PNG per scenario; returns ``{scenario: path relative to docs/}`` (empty without matplotlib)."""
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
        fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
        for r in results:
            if r.scenario != scenario:
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
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    parser.add_argument("--policy", action="append", choices=POLICIES, help="only this policy (repeatable)")
    parser.add_argument(
        "--write-docs", action="store_true", help="write docs/policies.md's table and docs/img/"
    )
    args = parser.parse_args(argv)
    results = run_all(
        hours=args.hours,
        scenarios=args.scenario,
        policies=tuple(args.policy or POLICIES),
        interval=args.interval,
    )
    command = f"python benchmarks/policies.py --hours {args.hours:g} --write-docs"
    images = plot(results, ROOT / "docs" / "img") if args.write_docs else {}
    text = markdown(results, command=command, images=images)
    print(text)
    print(f"({sum(r.seconds for r in results):.1f} s of computing)", file=sys.stderr)
    if args.write_docs:
        write_docs(text, ROOT / "docs" / "policies.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
