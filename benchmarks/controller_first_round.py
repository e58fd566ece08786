"""How long the controller's first round takes on a large fake host: the round that sets the
guest statistics period the policy wants on every running VM.

A fresh controller finds every VM's stats period other than the policy's (the ``hvballoon``
policy wants 1 s; the fake's VMs report every 10 s) and sets it where the backend can change it
live, before its first decision. It sends them in one ``set_configs`` (one bulk read of the VMs'
configurations, then one change per VM), where it used to call ``set_config`` once per VM (each
reading that VM's configuration again): at 10,000 VMs, 10,000 calls.

On the fake KVM host of ``controller_round.py`` (``N`` VMs of 16 GiB, 7 GiB of physical memory
per VM), per size, each mode in a process of its own:

- ``first_round_seconds``: the wall time of the first ``Controller.step()``;
- ``next_round_seconds``: the median of the ``--rounds`` rounds after it (nothing left to set),
  the reference measured in the same run, and ``first_vs_next``, the ratio;
- ``calls``: the backend calls the first round made (``set_config`` is one per VM changed);
- ``per_vm``: the same, with the periods set one ``set_config`` per VM as before, and
  ``bulk_vs_per_vm``: ``first_round_seconds`` over the per-VM first round's;
- ``same_decisions``: whether both modes decided the same in every round.

Run (it prints one JSON document)::

    python benchmarks/controller_first_round.py [--sizes 1000 10000] [--rounds 3] [--out result.json]
"""

from __future__ import annotations

import argparse
import hashlib
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
from controller_round import INTERVAL, scenario  # noqa: E402 - the same large host

import hvballoon  # noqa: E402
from hvballoon.errors import HVBalloonError  # noqa: E402
from hvballoon.fake.world import World  # noqa: E402
from hvballoon.policy import Controller, ControllerSettings, get_policy  # noqa: E402
from tests.support.calls import counted  # noqa: E402

POLICY = "hvballoon"


def per_vm(ctl: Controller) -> None:
    """The controller setting the stats periods as it did before: one ``set_config`` per VM."""

    def one_by_one(stats: list[Any]) -> None:
        wanted = ctl.stats_period_seconds
        for s in stats:
            try:
                ctl.hv.set_config(s.vm, stats_period=wanted)
            except HVBalloonError:
                continue
            ctl._configs.pop(s.vm.id, None)

    ctl._keep_stats_periods = one_by_one  # type: ignore[method-assign]


def run(n: int, *, rounds: int, old: bool) -> dict[str, Any]:
    world = World(scenario(n), flavor="kvm")
    settings = ControllerSettings(
        host_memory_bytes=world.host.physical_bytes,
        host_overhead_bytes=world.host.overhead_bytes,
        interval_seconds=INTERVAL,
    )
    digest = hashlib.sha256()
    times: list[float] = []
    with hvballoon.connect("fake://", world=world) as hv:
        calls = counted(hv)
        ctl = Controller(hv, get_policy(POLICY), settings)
        if old:
            per_vm(ctl)
        first: Counter[str] = Counter()
        for k in range(1 + rounds):
            hv.backend.sleep(INTERVAL)  # the simulation between rounds: not part of a round
            calls.clear()
            began = time.perf_counter()
            decisions = ctl.step()
            times.append(time.perf_counter() - began)
            if k == 0:
                first = Counter(calls)
            for d in decisions:
                digest.update(repr((d.vm, d.action, d.rule, d.after_bytes)).encode())
    return {
        "first_round_seconds": round(times[0], 4),
        "next_round_seconds": round(statistics.median(times[1:]), 4),
        "first_vs_next": round(times[0] / statistics.median(times[1:]), 2),
        "calls": dict(sorted(first.items())),
        "decisions": digest.hexdigest()[:16],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument(
        "--rounds", type=int, default=3, help="rounds after the first (their median: the reference)"
    )
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--per-vm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run(args.one, rounds=args.rounds, old=args.per_vm)))
        return 0
    runs = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--rounds", str(args.rounds)]
        bulk = json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600).stdout
        )
        old = subprocess.run([*cmd, "--per-vm"], capture_output=True, text=True, check=True, timeout=3600)
        before = bulk["per_vm"] = json.loads(old.stdout)
        bulk["bulk_vs_per_vm"] = round(bulk["first_round_seconds"] / before["first_round_seconds"], 2)
        bulk["same_decisions"] = bulk["decisions"] == before["decisions"]
        runs.append({"vms": n, **bulk})
    return emit("controller_first_round", args.out, policy=POLICY, interval_seconds=INTERVAL, runs=runs)


if __name__ == "__main__":
    raise SystemExit(main())
