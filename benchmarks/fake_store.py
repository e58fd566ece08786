"""What a bulk call costs on a fake world persisted in a state file (``fake://…?state=PATH``),
beside the same call on a world held in memory, in the same run.

For each size, a simulated KVM host of that many 4 GiB VMs, connected twice: held in memory
(the reference) and persisted in a fresh state file. On each:

- ``set_targets``: every VM's target moved at once (alternately to 3 GiB and 2 GiB, so that
  every run moves every VM);
- ``set_configs``: every VM's ``stats_period`` changed at once (alternately 7 s and 9 s).

Each is the median of ``--repeat`` runs, in wall seconds (the state file's I/O is part of the
cost), with the persisted world's ratio to the world in memory. Run from the repository root::

    python benchmarks/fake_store.py [--sizes 200 400 1000 2000] [--repeat 3] [--out result.json]

It prints (and writes) one JSON document.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import emit, fake_host, median_seconds  # noqa: E402


def _costs(uri: str, vms: int, repeat: int) -> dict[str, float]:
    import hvballoon

    names = [f"vm{i:05d}" for i in range(vms)]
    targets = itertools.cycle(["3GiB", "2GiB"])
    periods = itertools.cycle([7, 9])
    with hvballoon.connect(uri) as hv:

        def set_targets() -> None:
            size = next(targets)
            results = hv.set_targets(dict.fromkeys(names, size))
            assert results.ok and all(c.changed for c in results.changes.values()), "not every VM moved"

        def set_configs() -> None:
            period = next(periods)
            results = hv.set_configs({name: {"stats_period": period} for name in names})
            assert results.ok and all(c.changed for c in results.changes.values()), "not every VM changed"

        return {
            "set_targets": median_seconds(set_targets, repeat),
            "set_configs": median_seconds(set_configs, repeat),
        }


def one_size(vms: int, repeat: int, where: Path) -> dict[str, Any]:
    uri = fake_host(vms, where, gib_per_vm=8)
    memory = _costs(uri, vms, repeat)
    persisted = _costs(f"{uri}?state={where / f'world-{vms}.db'}", vms, repeat)
    row: dict[str, Any] = {"vms": vms}
    for op in ("set_targets", "set_configs"):
        row[op] = {
            "memory_seconds": memory[op],
            "persisted_seconds": persisted[op],
            "persisted_vs_memory": round(persisted[op] / memory[op], 2),
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 400, 1000, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_size(n, args.repeat, Path(tmp)) for n in args.sizes]
    return emit("fake_store", args.out, repeat=args.repeat, sizes=rows)


if __name__ == "__main__":
    sys.exit(main())
