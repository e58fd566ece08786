"""How long one controller round takes on a large fake host, every policy side by side.

A fake KVM host with ``N`` VMs (1,000 and 10,000 by default) of the design's typical VM — 16 GiB
configured, using 3-7 GiB plus page cache, workloads constant, random-walking or diurnal — on a
host with 7 GiB of physical memory per VM, so that it is under pressure and every policy moves
targets. For each policy the controller runs ``--warm`` rounds, then ``--rounds`` timed rounds
(10 s of simulated time apart; the simulation's own time between rounds is not counted), and
the benchmark reports per policy:

- ``round_seconds``: the median wall time of ``Controller.step()`` (one stats sweep, the
  configurations it needs, the policy, two bulk ``set_targets``);
- ``decide_seconds``: the median time of the policy's own ``decide`` (its per-round work), and
  ``decide_per_vm_us`` / ``decide_nogc_per_vm_us`` per VM, the latter on the last round's
  inputs with the garbage collector held off (the algorithm's own cost);
- ``moves``: the targets moved per round (median);
- ``vs_mom``: ``round_seconds`` over the ``mom`` policy's, in the same run.

``decide_nogc_per_vm_us`` compared across sizes shows whether a policy's own work is linear in
the number of VMs. Each size and policy runs in a process of its own, so that one run's heap (and
the garbage collector's work on it) does not weigh on the next. Run (it prints one JSON
document)::

    python benchmarks/controller_round.py [--sizes 1000 10000] [--rounds 5] [--out result.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _report import emit  # noqa: E402 - the benchmarks' own helper, beside this script

#: every policy, and the baselines run as published, without hvballoon's guard rails
from policies import BASELINES, POLICIES  # noqa: E402 - the policies benchmark, beside this script

import hvballoon  # noqa: E402
from hvballoon.fake.scenario import HostSpec, Scenario, VMSpec, WorkloadSpec  # noqa: E402
from hvballoon.fake.world import World  # noqa: E402
from hvballoon.policy import Controller, ControllerSettings, get_policy  # noqa: E402

GiB = 1024**3
INTERVAL = 10.0


def scenario(n: int) -> Scenario:
    workloads = [
        WorkloadSpec(kind="constant"),
        WorkloadSpec(kind="random_walk", params={"step": "96MiB"}),
        WorkloadSpec(kind="diurnal", params={"amplitude": "1GiB", "phase": "3h"}),
    ]
    vms = [
        VMSpec(
            name=f"vm{i:05d}",
            memory=16 * GiB,
            used=(3 + i % 5) * GiB,
            cache=GiB,
            swap=2 * GiB,
            workload=workloads[i % 3],
        )
        for i in range(n)
    ]
    return Scenario(
        name=f"scale{n}",
        seed=7,
        host=HostSpec(name="big01", physical=7 * GiB * n, overhead=4 * GiB, swap=GiB * n),
        vms=vms,
    )


def timed_rounds(ctl: Controller, *, rounds: int, warm: int) -> tuple[list[float], list[int]]:
    """``warm`` rounds, then ``rounds`` timed ones, ``INTERVAL`` of simulated time apart: the
    wall time of each timed ``step()`` and the targets it moved."""
    times: list[float] = []
    moves: list[int] = []
    for k in range(warm + rounds):
        ctl.hv.backend.sleep(INTERVAL)  # the simulation between rounds: not part of a round
        began = time.perf_counter()
        decisions = ctl.step()
        spent = time.perf_counter() - began
        if k >= warm:
            times.append(spent)
            moves.append(sum(d.action in ("raise", "lower") for d in decisions))
    return times, moves


def run(n: int, policy_name: str, *, rounds: int, warm: int) -> dict[str, Any]:
    world = World(scenario(n), flavor="kvm")
    settings = ControllerSettings(
        host_memory_bytes=world.host.physical_bytes,
        host_overhead_bytes=world.host.overhead_bytes,
        interval_seconds=INTERVAL,
        respect_guard_rails=policy_name not in BASELINES,
    )
    policy = get_policy(policy_name)
    decide_times: list[float] = []
    inner = policy.decide

    last: list[Any] = []

    def timed_decide(snapshot: Any, state: Any) -> Any:
        last[:] = [snapshot, state]
        began = time.perf_counter()
        try:
            return inner(snapshot, state)
        finally:
            decide_times.append(time.perf_counter() - began)

    policy.decide = timed_decide  # type: ignore[method-assign]
    with hvballoon.connect("fake://", world=world) as hv:
        round_times, moves = timed_rounds(Controller(hv, policy, settings), rounds=rounds, warm=warm)
    decide = statistics.median(decide_times[warm:])
    # the policy's own work on the last round's inputs, with the garbage collector held off:
    # what the algorithm costs, apart from the collector's passes over a large heap
    quiet = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            began = time.perf_counter()
            inner(*last)
            quiet.append(time.perf_counter() - began)
    finally:
        gc.enable()
    return {
        "round_seconds": round(statistics.median(round_times), 4),
        "all_round_seconds": [round(t, 4) for t in round_times],
        "decide_seconds": round(decide, 4),
        "decide_per_vm_us": round(decide / n * 1e6, 2),
        "decide_nogc_per_vm_us": round(statistics.median(quiet) / n * 1e6, 2),
        "moves": statistics.median(moves),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per policy (median reported)")
    ap.add_argument("--warm", type=int, default=3, help="rounds before timing")
    ap.add_argument("--policy", action="append", choices=POLICIES, help="only this policy (repeatable)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--one", nargs=2, metavar=("N", "POLICY"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run(int(args.one[0]), args.one[1], rounds=args.rounds, warm=args.warm)))
        return 0
    policies = tuple(args.policy or POLICIES)
    runs = []
    for n in args.sizes:
        by_policy = {}
        for p in policies:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                str(n),
                p,
                "--rounds",
                str(args.rounds),
                "--warm",
                str(args.warm),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
            by_policy[p] = json.loads(proc.stdout)
        if "mom" in by_policy:
            mom = by_policy["mom"]["round_seconds"]
            for r in by_policy.values():
                r["vs_mom"] = round(r["round_seconds"] / mom, 2) if mom else None
        runs.append({"vms": n, "policies": by_policy})
    return emit("controller_round", args.out, interval_seconds=INTERVAL, runs=runs)


if __name__ == "__main__":
    raise SystemExit(main())
