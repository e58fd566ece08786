"""What the controller's durable journal costs a round: the same rounds with the journal in
memory and in a file (SQLite, synchronous=FULL: each round's intentions and outcomes are on
disk before and after its moves), side by side in the same run.

The host is the controller-round benchmark's (``N`` VMs of 16 GiB on 7 GiB of physical memory
per VM, under pressure) and the policy ``mom``, which moves every VM a little each round: the
journal records every move. Per size it reports the median wall time of ``Controller.step()``
with each journal and of the journal's own writes in it (``journal_seconds``: what the round
intends, how its moves ended), the moves per round, and ``file_vs_memory``, the ratio of the
two rounds. The file lives in ``--dir`` (default: the system's temporary directory), so the
figure is that disk's.

``--unindexed`` also runs the file journal without its index of the change log by VM and round
(as journals were before it), reported under ``unindexed`` with ``vs_unindexed``, the round's
time over that run's: without it each move's outcome was looked up by walking the change log
back past every move of the round after it, quadratic in the moves. Run (it prints one JSON
document)::

    python benchmarks/controller_journal.py [--sizes 100 1000] [--rounds 7] [--dir /var/lib/x]
    python benchmarks/controller_journal.py --sizes 1000 3000 10000 --rounds 3 --unindexed
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _report import emit  # noqa: E402 - the benchmarks' own helper, beside this script
from controller_round import INTERVAL, scenario, timed_rounds  # noqa: E402 - the same host, beside this script

import hvballoon  # noqa: E402
from hvballoon.fake.world import World  # noqa: E402
from hvballoon.policy import Controller, ControllerSettings  # noqa: E402
from hvballoon.policy.journal import Journal  # noqa: E402


def _timing_writes(journal: Journal, spent: list[float]) -> None:
    """Add the time each of the journal's writes of a round takes to ``spent``."""
    for name in ("intend", "settle"):
        original = getattr(journal, name)

        def timed(*a: Any, _original: Any = original, **kw: Any) -> Any:
            began = time.perf_counter()
            try:
                return _original(*a, **kw)
            finally:
                spent.append(time.perf_counter() - began)

        setattr(journal, name, timed)


def run(n: int, path: Path | None, *, rounds: int, warm: int, unindexed: bool = False) -> dict[str, Any]:
    world = World(scenario(n), flavor="kvm")
    settings = ControllerSettings(
        host_memory_bytes=world.host.physical_bytes,
        host_overhead_bytes=world.host.overhead_bytes,
        interval_seconds=INTERVAL,
    )
    with (
        hvballoon.connect("fake://", world=world) as hv,
        Journal.open(path, uri=hv.uri) as journal,
    ):
        if unindexed:
            journal._conn.execute("DROP INDEX changes_by_vm")
        writes: list[float] = []
        _timing_writes(journal, writes)
        ctl = Controller(hv, "mom", settings, journal=journal)
        began: list[int] = []  # where each round's writes begin in ``writes``
        step = ctl.step

        def marked_step() -> Any:
            began.append(len(writes))
            return step()

        ctl.step = marked_step  # type: ignore[method-assign]
        times, moves, _calls = timed_rounds(ctl, rounds=rounds, warm=warm)
        lowered = len(journal.lowered())
    ends = [*began[1:], len(writes)]
    per_round = [sum(writes[a:b]) for a, b in zip(began, ends, strict=True)]
    return {
        "round_seconds": round(statistics.median(times), 4),
        "journal_seconds": round(statistics.median(per_round[warm:]), 4),
        "all_round_seconds": [round(t, 4) for t in times],
        "moves": statistics.median(moves),
        "vms_held_lowered": lowered,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per journal (median reported)")
    ap.add_argument("--warm", type=int, default=2, help="rounds before timing")
    ap.add_argument("--dir", type=Path, help="where the journal file goes (default: a temporary directory)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument(
        "--unindexed",
        action="store_true",
        help="also run the file journal without its index of the change log (as before it)",
    )
    args = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in args.sizes:
            memory = run(n, None, rounds=args.rounds, warm=args.warm)
            on_disk = run(n, Path(tmp) / f"journal-{n}.db", rounds=args.rounds, warm=args.warm)
            ratio = on_disk["round_seconds"] / memory["round_seconds"] if memory["round_seconds"] else None
            one: dict[str, Any] = {
                "vms": n,
                "memory": memory,
                "file": on_disk,
                "file_vs_memory": None if ratio is None else round(ratio, 2),
            }
            if args.unindexed:
                before = run(
                    n, Path(tmp) / f"unindexed-{n}.db", rounds=args.rounds, warm=args.warm, unindexed=True
                )
                one["unindexed"] = before
                one["vs_unindexed"] = round(on_disk["round_seconds"] / before["round_seconds"], 2)
            runs.append(one)
    return emit("controller_journal", args.out, interval_seconds=INTERVAL, policy="mom", runs=runs)


if __name__ == "__main__":
    raise SystemExit(main())
