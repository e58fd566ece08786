"""What moving targets costs through the vSphere API: requests and wall time, one simulator.

Against the vSphere simulator (the test peer) with 1,000 VMs on 4 hosts, it measures:

- ``one_by_name_cold``: ``hv.set_target("vm00500", …)`` in a new session (the name is unknown:
  one sweep of the VMs' names, the hosts' names once, then the change);
- ``one_by_name_warm``: the same in a session that has seen the VMs (a sweep, as every
  controller round makes);
- ``round_naive``: moving 100 of the 1,000 VMs one ``set_target`` after the other (the API a
  script would loop over), in a warm session;
- ``round_bulk``: the same 100 moves in one ``set_targets``.

Each is measured twice: with the simulator's tasks ending before ``ReconfigVM_Task`` returns
(``task_delay_s: 0``, the stock simulator) and with tasks that run ``--task-delay`` seconds
(default 0.2 s), as a vCenter's reconfiguration does. ``requests`` are the SOAP requests the
simulator counted, by method. Run (it prints one JSON document)::

    python benchmarks/esxi_targets.py [--vms 1000] [--moves 100] [--task-delay 0.2] [--out r.json]

With ``--code DIR`` the same measurements run against another checkout's ``hvballoon`` (for
the figures before a change); its sessions need no ``set_targets`` for the first two.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _report import emit  # noqa: E402 - the benchmarks' own helper, beside this script

from tests.support.vsphere import harness  # noqa: E402

MiB = 1024**2


def fleet(n: int) -> list[dict[str, Any]]:
    """The design's typical VM: 16 GiB configured, using 3-7 GiB, a 1 GiB reservation."""
    return [
        {
            "name": f"vm{i:05d}",
            "memoryMB": 16384,
            "memoryAllocation": {
                "reservation": 1024,
                "limit": -1,
                "shares": {"level": "normal", "shares": 163840},
            },
            "quickStats": {"guestMemoryUsage": 3072 + (i % 5) * 1024, "hostMemoryUsage": 8000},
        }
        for i in range(n)
    ]


def measured(peer: harness.VcsimServer, fn: Callable[[], Any]) -> dict[str, Any]:
    peer.reset_counts()
    began = time.perf_counter()
    fn()
    seconds = time.perf_counter() - began
    counts = peer.counts()
    return {"requests": sum(counts.values()), "by_method": counts, "seconds": round(seconds, 4)}


def run(n: int, moves: int, task_delay: float) -> dict[str, Any]:
    import hvballoon

    out: dict[str, Any] = {"vms": n, "moves": moves, "task_delay_s": task_delay}
    with harness.VcsimServer(fleet(n), hosts=4, task_delay=task_delay) as peer:
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}/?scheme=http"

        def session() -> Any:
            return hvballoon.connect(uri, password=peer.password, timeout=120)

        middle = f"vm{n // 2:05d}"
        with session() as hv:
            out["one_by_name_cold"] = measured(peer, lambda: hv.set_target(middle, 8192 * MiB, force=True))
        with session() as hv:
            hv.get_stats()
            out["one_by_name_warm"] = measured(peer, lambda: hv.set_target(middle, 9216 * MiB, force=True))
            picked = [f"vm{i:05d}" for i in range(0, n, max(1, n // moves))][:moves]
            if hasattr(hv, "set_targets"):
                out["round_bulk"] = measured(
                    peer, lambda: hv.set_targets({name: 10240 * MiB for name in picked}, force=True)
                )

            def naive() -> None:
                for name in picked:
                    hv.set_target(name, 11264 * MiB, force=True)

            out["round_naive"] = measured(peer, naive)
        if "round_bulk" in out:
            out["bulk_vs_naive"] = {
                "requests": round(out["round_bulk"]["requests"] / out["round_naive"]["requests"], 3),
                "seconds": round(out["round_bulk"]["seconds"] / out["round_naive"]["seconds"], 3),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--moves", type=int, default=100)
    ap.add_argument("--task-delay", type=float, default=0.2, help="seconds a task runs (second pass)")
    ap.add_argument("--code", type=Path, help="measure the hvballoon of this checkout instead")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.code is not None:
        for sub in ("backends/esxi", "."):
            sys.path.insert(0, str((args.code / sub).resolve()))
    reasons = harness.prerequisites()
    if reasons:
        print("; ".join(reasons), file=sys.stderr)
        return 2
    import hvballoon

    runs = [run(args.vms, args.moves, delay) for delay in (0.0, args.task_delay)]
    return emit("esxi_targets", args.out, hvballoon=str(Path(hvballoon.__file__).resolve().parent), runs=runs)


if __name__ == "__main__":
    raise SystemExit(main())
