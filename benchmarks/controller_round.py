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
- ``reads_per_round`` / ``requests_per_round``: the calls a timed round made to the backend
  (median): the reads of VM figures (stats sweeps, configuration reads, the bulk read a
  ``set_targets`` makes of figures it was not given), and every request (the moves and the
  hosts' figures too); ``calls_per_round``, the mean of each call;
- ``vs_mom``: ``round_seconds`` over the ``mom`` policy's, in the same run.

``--reread`` also runs each policy as rounds did before ``set_targets(figures=...)``: the
controller's two ``set_targets`` read their VMs again (the figures it passes are dropped), and
reports that run under ``reread`` with ``vs_reread``, ``round_seconds`` over its own.

``decide_nogc_per_vm_us`` compared across sizes shows whether a policy's own work is linear in
the number of VMs. Each size and policy runs in a process of its own, so that one run's heap (and
the garbage collector's work on it) does not weigh on the next. Run (it prints one JSON
document)::

    python benchmarks/controller_round.py [--sizes 1000 10000] [--rounds 5] [--reread] [--out result.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
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
from tests.support.calls import counted  # noqa: E402

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


#: the backend's calls that read VMs' figures (every call is counted: :func:`counted`)
READS = ("get_stats", "get_configs", "get_config", "get_stats_and_configs")


def reread(hv: hvballoon.Hypervisor) -> None:
    """``set_targets`` as it was before ``figures=``: the caller's figures dropped, so every
    call reads its VMs again."""
    original = hv.set_targets

    def without_figures(*a: Any, figures: Any = None, **kw: Any) -> Any:
        return original(*a, **kw)

    hv.set_targets = without_figures  # type: ignore[method-assign]


def timed_rounds(
    ctl: Controller, *, rounds: int, warm: int, calls: Counter[str] | None = None
) -> tuple[list[float], list[int], list[Counter[str]]]:
    """``warm`` rounds, then ``rounds`` timed ones, ``INTERVAL`` of simulated time apart: the
    wall time of each timed ``step()``, the targets it moved and (given ``calls``, the
    counter of :func:`counted`) the backend calls it made."""
    times: list[float] = []
    moves: list[int] = []
    made: list[Counter[str]] = []
    for k in range(warm + rounds):
        ctl.hv.backend.sleep(INTERVAL)  # the simulation between rounds: not part of a round
        if calls is not None:
            calls.clear()
        began = time.perf_counter()
        decisions = ctl.step()
        spent = time.perf_counter() - began
        if k >= warm:
            times.append(spent)
            moves.append(sum(d.action in ("raise", "lower") for d in decisions))
            made.append(Counter(calls or {}))
    return times, moves, made


def run(n: int, policy_name: str, *, rounds: int, warm: int, again: bool = False) -> dict[str, Any]:
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
        if again:
            reread(hv)
        calls = counted(hv)
        ctl = Controller(hv, policy, settings)
        round_times, moves, made = timed_rounds(ctl, rounds=rounds, warm=warm, calls=calls)
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
        "reads_per_round": statistics.median(sum(c[k] for k in READS) for c in made),
        "requests_per_round": statistics.median(sum(c.values()) for c in made),
        "calls_per_round": {k: round(v / len(made), 2) for k, v in sorted(sum(made, Counter()).items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per policy (median reported)")
    ap.add_argument("--warm", type=int, default=3, help="rounds before timing")
    ap.add_argument("--policy", action="append", choices=POLICIES, help="only this policy (repeatable)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument(
        "--reread",
        action="store_true",
        help="also run each policy with set_targets reading its VMs again (as before figures=)",
    )
    ap.add_argument("--one", nargs=2, metavar=("N", "POLICY"), help=argparse.SUPPRESS)
    ap.add_argument("--again", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        n, name = int(args.one[0]), args.one[1]
        print(json.dumps(run(n, name, rounds=args.rounds, warm=args.warm, again=args.again)))
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
            if args.reread:
                proc = subprocess.run(
                    [*cmd, "--again"], capture_output=True, text=True, check=True, timeout=3600
                )
                before = by_policy[p]["reread"] = json.loads(proc.stdout)
                by_policy[p]["vs_reread"] = (
                    round(by_policy[p]["round_seconds"] / before["round_seconds"], 2)
                    if before["round_seconds"]
                    else None
                )
        if "mom" in by_policy:
            mom = by_policy["mom"]["round_seconds"]
            for r in by_policy.values():
                r["vs_mom"] = round(r["round_seconds"] / mom, 2) if mom else None
        runs.append({"vms": n, "policies": by_policy})
    return emit("controller_round", args.out, interval_seconds=INTERVAL, runs=runs)


if __name__ == "__main__":
    raise SystemExit(main())
