"""What every benchmark ends with: one JSON document on stdout (and in ``--out`` if given); the
median of repeated runs, in wall or CPU seconds; and a large fake host written to a scenario
file."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def median_seconds(fn: Callable[[], Any], repeat: int, *, cpu: bool = False) -> float:
    """The median time of ``repeat`` calls of ``fn``, in seconds (4 decimals): wall time, or with
    ``cpu`` the process's CPU time (for single-threaded work without I/O, it holds on a machine
    busy with something else)."""
    clock = time.process_time if cpu else time.perf_counter
    times = []
    for _ in range(repeat):
        began = clock()
        fn()
        times.append(clock() - began)
    return round(statistics.median(times), 4)


def emit(benchmark: str, out: Path | None = None, **fields: Any) -> int:
    """Print ``{"benchmark", "python", "machine", **fields}`` as JSON; write it to ``out`` too."""
    result = {
        "benchmark": benchmark,
        "python": platform.python_version(),
        "machine": platform.machine(),
        **fields,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")
    return 0


def fake_host(vms: int, where: Path, *, gib_per_vm: int) -> str:
    """The ``fake://`` URI of a scenario file in ``where``: ``vms`` VMs of 4 GiB (``vm00000``…,
    1 GiB used, 512 MiB of cache) on a host of ``gib_per_vm`` GiB of physical memory per VM."""
    path = where / f"host-{vms}.json"
    fleet = [{"name": f"vm{i:05d}", "memory": "4GiB", "used": "1GiB", "cache": "512MiB"} for i in range(vms)]
    host = {"physical": f"{vms * gib_per_vm}GiB"}
    path.write_text(json.dumps({"name": f"vms-{vms}", "host": host, "vms": fleet}))
    return f"fake://{path}"
