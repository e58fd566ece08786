"""What one memory sweep of every VM behind a directory of QMP sockets costs: hvballoon vs naive.

The peer is N real QEMU processes (default 100) that never run a guest — paused ``-M microvm -S``
machines with one ``virtio-balloon-device`` each, ~27 MB resident, started by the test peer in
``tests/support/qmp_guest`` — so what is measured is the QMP cost alone: connecting, QEMU's
greeting and capability negotiation, the commands and their answers, hanging up.

Two ways, reading the same facts of every VM (name, UUID, run state, memory size, the balloon's
``actual``, its stats period and guest statistics), in the same run:

- ``hvballoon``: ``hv.get_stats()`` (models included), at several ``concurrency`` settings; each
  VM's commands pipelined in one round trip. Its first sweep also finds each balloon device in
  QEMU's object tree and switches its stats period on: reported separately;
- ``naive``: one VM after the other with ``qemu.qmp``: connect, each command awaited in turn,
  disconnect — what a straightforward script does.

Run (as any user who may run QEMU; 100 VMs need ~3 GB of memory)::

    python benchmarks/qmp_sweep.py [--vms 100] [--repeat 5] [--concurrency 1,4,16,64] [--out result.json]

It prints (and writes) one JSON document; ``ratio`` is hvballoon's median sweep over the naive
loop's (below 1: hvballoon is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qemu.qmp import QMPClient  # noqa: E402

import hvballoon  # noqa: E402
from tests.support.qmp_guest.harness import QemuProcess, prerequisites, start_bare  # noqa: E402

BALLOON = "/machine/peripheral-anon/device[0]"


async def _naive_one(path: str) -> dict[str, Any]:
    client = QMPClient("naive")
    await client.connect(path)
    try:
        out = {
            "name": await client.execute("query-name"),
            "uuid": await client.execute("query-uuid"),
            "status": await client.execute("query-status"),
            "memory": await client.execute("query-memory-size-summary"),
            "balloon": await client.execute("query-balloon"),
            "period": await client.execute(
                "qom-get", {"path": BALLOON, "property": "guest-stats-polling-interval"}
            ),
            "stats": await client.execute("qom-get", {"path": BALLOON, "property": "guest-stats"}),
        }
    finally:
        await client.disconnect()
    return out


async def _naive_sweep(paths: list[str]) -> list[dict[str, Any]]:
    return [await _naive_one(p) for p in paths]


def _median_time(fn: Any, repeat: int) -> tuple[float, list[float], Any]:
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated settings to measure")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    reasons = prerequisites(guest=False)
    if reasons:
        print("cannot run: " + "; ".join(reasons), file=sys.stderr)
        return 2
    settings = [int(c) for c in args.concurrency.split(",")]
    where = Path(tempfile.mkdtemp(prefix="hvbq-bench-"))
    procs: list[QemuProcess] = []
    try:
        start = time.perf_counter()
        for i in range(args.vms):
            procs.append(
                start_bare(
                    where,
                    f"{100 + i}",
                    qemu_name=f"vm{i:03d}",
                    uuid=f"00000000-0000-4000-8000-{i:012d}",
                    wait=False,
                )
            )
        for proc in procs:
            proc.wait_socket(60)
        started = time.perf_counter() - start
        paths = sorted(str(p.qmp_socket) for p in procs)
        uri = f"qmp://{where}"

        naive_median, naive_times, naive = _median_time(lambda: asyncio.run(_naive_sweep(paths)), args.repeat)
        assert len(naive) == args.vms

        ways: list[dict[str, Any]] = []
        for concurrency in settings:
            with hvballoon.connect(uri, concurrency=concurrency, timeout=60) as hv:
                t0 = time.perf_counter()
                first = hv.get_stats()
                first_seconds = time.perf_counter() - t0
                assert len(first) == args.vms
                median, times, stats = _median_time(hv.get_stats, args.repeat)
                assert len(stats) == args.vms and all(s.configured_bytes == 64 * 2**20 for s in stats)
                list_median, _, _ = _median_time(hv.list_vms, args.repeat)
            ways.append(
                {
                    "way": "hvballoon",
                    "concurrency": concurrency,
                    "first_sweep_seconds": round(first_seconds, 4),
                    "sweep_median_seconds": round(median, 4),
                    "sweep_seconds": [round(t, 4) for t in times],
                    "list_vms_median_seconds": round(list_median, 4),
                    "ratio_vs_naive": round(median / naive_median, 3),
                }
            )
        result = {
            "benchmark": "qmp_sweep",
            "vms": args.vms,
            "repeat": args.repeat,
            "peer": "paused qemu-system-x86_64 -M microvm -S, one virtio-balloon-device each",
            "qemu_start_seconds": round(started, 2),
            "naive": {
                "way": "naive sequential loop (qemu.qmp, one command at a time)",
                "sweep_median_seconds": round(naive_median, 4),
                "sweep_seconds": [round(t, 4) for t in naive_times],
            },
            "hvballoon": ways,
            "python": platform.python_version(),
            "qemu.qmp": metadata.version("qemu.qmp"),
            "machine": platform.machine(),
        }
    finally:
        for proc in procs:
            proc.kill()
        shutil.rmtree(where, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
