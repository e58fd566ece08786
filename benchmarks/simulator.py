"""Simulator speed: 1,000 VMs for 24 simulated hours at 1 s steps, and the same model as a
straightforward per-VM Python loop (on a shorter horizon) for comparison.

    python benchmarks/simulator.py                 # full run, prints JSON
    python benchmarks/simulator.py --hours 1       # quicker

Both run the KVM flavour's model: workload demand, a finite-rate balloon with its floor, OOM
kills beyond current + swap, guest swap with swap-in, page cache growing into free memory and
reclaimed first, and the host swapping QEMU memory when the guests' touched memory does not fit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from typing import Any

import numpy as np

from hvballoon.fake.physics import CACHE_GROWTH_RATE, SWAP_IN_RATE
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World

GiB = 1024**3
MiB = 1024**2

TEMPLATES: list[dict[str, Any]] = [
    {
        "used": 3 * GiB,
        "cache": 2 * GiB,
        "swap": 2 * GiB,
        "workload": {"kind": "diurnal", "params": {"amplitude": 2 * GiB}},
    },
    {
        "used": 5 * GiB,
        "cache": GiB,
        "swap": 4 * GiB,
        "workload": {"kind": "random_walk", "params": {"step": 64 * MiB}},
    },
    {
        "used": 4 * GiB,
        "cache": GiB,
        "swap": 4 * GiB,
        "workload": {"kind": "ramp", "params": {"to": 7 * GiB, "over": 8 * 3600}},
    },
    {
        "used": 7 * GiB,
        "cache": GiB // 2,
        "swap": 4 * GiB,
        "unfreeable": GiB,
        "workload": {
            "kind": "database",
            "params": {"buffer_pool": 6 * GiB, "filled": 4 * GiB, "query_memory": GiB},
        },
    },
    {
        "used": 6 * GiB,
        "cache": GiB // 2,
        "swap": 4 * GiB,
        "workload": {"kind": "jvm", "params": {"heap": 5 * GiB}},
    },
    {"used": 4 * GiB, "cache": 3 * GiB, "swap": 2 * GiB, "workload": {"kind": "constant"}},
    {
        "used": 1536 * MiB,
        "cache": GiB // 2,
        "swap": 2 * GiB,
        "workload": {"kind": "spike", "params": {"at": 7200, "duration": 1800, "size": 5 * GiB}},
    },
]


def scenario(n: int) -> dict[str, Any]:
    """``n`` 16 GiB VMs on hosts' worth of memory like the seed's (12 GiB of host per VM)."""
    vms = []
    for i in range(n):
        t = dict(TEMPLATES[i % len(TEMPLATES)])
        wl = json.loads(json.dumps(t.pop("workload")))
        if wl["kind"] == "diurnal":
            wl["params"]["phase"] = (i * 997) % 86400
        if wl["kind"] == "spike":
            wl["params"]["at"] = 3600 + (i * 131) % 36000
        vm = {"name": f"vm{i:04d}", "memory": 16 * GiB, "workload": wl, "stats_period": 10, **t}
        if i % 4 == 0:  # a quarter of the VMs ballooned down, some below their demand
            vm["target"] = t["used"] + (i % 3 - 1) * GiB
        vms.append(vm)
    return {
        "name": f"bench{n}",
        "host": {"physical": 12 * GiB * n, "overhead": 2 * GiB, "reserve": 4 * GiB, "swap": 2 * GiB * n},
        "vms": vms,
    }


def run_vectorised(n: int, seconds: int) -> tuple[float, World]:
    world = World(parse_scenario(scenario(n)))
    start = time.perf_counter()
    world.advance(seconds)
    return time.perf_counter() - start, world


def run_naive(world0: World, seconds: int, seed: int = 0) -> tuple[float, dict[str, list[float]]]:
    """The same model, one VM and one step at a time, in plain Python."""
    a = {k: v.tolist() for k, v in world0.state.arrays().items()}
    n = world0.n
    h = world0.host
    wl = [(s.workload.kind, s.workload.params) for s in world0.scenario.vms]
    rng = random.Random(seed)
    walk = [0.0] * n
    cur, cache, z, swp = a["current"][:], a["cache"][:], a["swap_backlog"][:], a["guest_swapped"][:]
    swin, swout, ooms = [0.0] * n, [0.0] * n, [0.0] * n
    dt = 1.0
    s_dt, g_dt = math.floor(SWAP_IN_RATE * dt), math.floor(CACHE_GROWTH_RATE * dt)
    base = h.overhead_bytes + sum(a["overhead"])
    avail = h.physical_bytes - h.reserve_bytes
    start = time.perf_counter()
    for step in range(1, seconds + 1):
        t = step * dt
        backed = [0.0] * n
        for i in range(n):
            floor = a["kernel"][i] + a["unfreeable"][i]
            mem, wsize = a["memory"][i], a["swap_size"][i]
            d = a["used_baseline"][i]
            kind, p = wl[i]
            if kind == "diurnal":
                d += p["amplitude"] * math.sin(2 * math.pi * (t + p.get("phase", 0)) / p.get("period", 86400))
            elif kind == "ramp":
                d += (p["to"] - a["used_baseline"][i]) * min(
                    max((t - p.get("start", 0)) / p["over"], 0.0), 1.0
                )
            elif kind == "spike":
                rise = p.get("rise", 30)
                up = min(max((t - p["at"]) / rise, 0.0), 1.0)
                down = min(max((p["at"] + p["duration"] - t) / rise, 0.0), 1.0)
                d += p["size"] * min(up, down)
            elif kind == "random_walk":
                walk[i] += rng.gauss(0.0, 1.0) * p["step"] * math.sqrt(dt / 60)
                lo, hi = floor - a["used_baseline"][i], 0.9 * mem - a["used_baseline"][i]
                w2 = 2 * max(hi - lo, 1.0)
                x = (walk[i] - lo) % w2
                d += lo + min(x, w2 - x)
            elif kind == "jvm":
                d += 0.0
            elif kind == "database":
                d += (p["buffer_pool"] - p["filled"]) * min(t / 3600, 1.0)
                d += p.get("query_memory", 0) * 0.5 * (1 - math.cos(2 * math.pi * t / 86400))
            d = max(math.floor(d), floor)
            goal = max(a["target"][i], floor)
            if goal < cur[i]:
                cur[i] = max(goal, cur[i] - math.floor(a["inflate_rate"][i] * dt))
            else:
                cur[i] = min(goal, cur[i] + math.floor(a["deflate_rate"][i] * dt))
            deff = min(d, cur[i] + wsize)
            if d > deff:
                ooms[i] += 1
            need = max(deff - cur[i], 0.0)
            z[i] = max(need, z[i] - s_dt)
            new_swp = min(z[i], deff - floor)
            if new_swp > swp[i]:
                swout[i] += new_swp - swp[i]
            else:
                swin[i] += min(swp[i] - new_swp, s_dt)
            swp[i] = new_swp
            roomy = cur[i] - deff + new_swp
            cache[i] = min(min(roomy, a["cache_max"][i]), cache[i] + g_dt)
            backed[i] = deff - new_swp + cache[i]
        total = sum(backed)
        excess = max(total + base - avail, 0.0)
        if excess:
            host_swapped = [min(math.ceil(excess * b / total), b) for b in backed]
            del host_swapped
    elapsed = time.perf_counter() - start
    return elapsed, {"cur": cur, "cache": cache, "swp": swp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--naive-seconds", type=int, default=300)
    args = parser.parse_args()
    seconds = int(args.hours * 3600)
    # warm-up (imports, first allocations)
    run_vectorised(args.vms, 60)
    vec_time, world = run_vectorised(args.vms, seconds)
    vec_rate = args.vms * seconds / vec_time

    _, short_world = run_vectorised(args.vms, args.naive_seconds)
    fresh = World(parse_scenario(scenario(args.vms)))
    naive_time, naive = run_naive(fresh, args.naive_seconds)
    naive_rate = args.vms * args.naive_seconds / naive_time
    # agreement on the VMs whose workload is deterministic (random walks draw differently)
    det = [i for i, s in enumerate(short_world.scenario.vms) if s.workload.kind != "random_walk"]
    state = short_world.state
    vectorised = {"cur": state.current, "cache": state.cache, "swp": state.guest_swapped}
    diff = max(max(abs(vectorised[k][i] - naive[k][i]) for i in det) for k in ("cur", "cache", "swp"))
    acc = world.accounting()["host"]
    print(
        json.dumps(
            {
                "vms": args.vms,
                "simulated_seconds": seconds,
                "step_seconds": 1.0,
                "vm_steps": args.vms * seconds,
                "vectorised_seconds": round(vec_time, 3),
                "vectorised_vm_steps_per_second": round(vec_rate),
                "naive_simulated_seconds": args.naive_seconds,
                "naive_seconds": round(naive_time, 3),
                "naive_vm_steps_per_second": round(naive_rate),
                "speedup": round(vec_rate / naive_rate, 1),
                "naive_vs_vectorised_max_difference_bytes": diff,
                "host_conserved": acc["conserved"],
                "host_swapped_bytes_at_end": acc["swapped"],
                "oom_events": int(world.state.oom_events.sum()),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
