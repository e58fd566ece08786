"""What writing a scrape's text costs the exporter at 1,000 and 10,000 VMs.

For each size, a simulated host of that many VMs is swept once by an exporter; then, on that
same sweep, in the same run:

- ``prometheus_client``: ``generate_latest`` of the exporter's registry (the reference: what
  the exporter wrote before);
- ``ours``: the exporter's own writer (:mod:`hvballoon._exposition`), the same bytes;
- ``cached``: a second scrape of the same sweep (the text is written once per sweep).

Each is the median of ``--repeat`` runs, with its ratio to the reference. Run from the
repository root::

    python benchmarks/exporter_render.py [--sizes 1000 10000] [--repeat 3] [--out result.json]

It prints (and writes) one JSON document.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import emit, fake_host, median_seconds  # noqa: E402


def one_size(vms: int, repeat: int, where: Path) -> dict[str, Any]:
    from prometheus_client import generate_latest

    from hvballoon._exposition import text
    from hvballoon.exporter import Exporter
    from hvballoon.fleet import Fleet

    with Exporter(Fleet([fake_host(vms, where, gib_per_vm=4)]), interval=3600) as ex:
        began = time.perf_counter()
        ex.current()  # the sweep every figure below writes
        sweep = round(time.perf_counter() - began, 4)
        ours = text(ex.registry)
        assert ours == generate_latest(ex.registry), "the texts differ"
        reference = median_seconds(lambda: generate_latest(ex.registry), repeat)
        own = median_seconds(lambda: text(ex.registry), repeat)
        ex.render()
        cached = median_seconds(ex.render, repeat)
        return {
            "vms": vms,
            "lines": ours.count(b"\n"),
            "sweep_seconds": sweep,
            "prometheus_client_seconds": reference,
            "ours_seconds": own,
            "cached_seconds": cached,
            "ours_vs_prometheus_client": round(own / reference, 3),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_size(n, args.repeat, Path(tmp)) for n in args.sizes]
    return emit("exporter_render", args.out, repeat=args.repeat, sizes=rows)


if __name__ == "__main__":
    sys.exit(main())
