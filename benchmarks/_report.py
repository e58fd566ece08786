"""What every benchmark ends with: one JSON document on stdout (and in ``--out`` if given); and
the median of repeated runs, in wall or CPU seconds."""

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
