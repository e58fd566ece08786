"""What reading a YAML scenario of 1,000 and 10,000 VMs costs.

For each size, a scenario file of that many VMs (half written in block style, half as flow
mappings, as people write them) is read, in the same run, by:

- ``before``: the strict loader on PyYAML's own scanner and parser, the cyclic garbage collector
  left running (the reference: how hvballoon read scenarios, settings and inventories before);
- ``pyyaml``: the same parser, the collector held off while reading (what hvballoon reads with
  where PyYAML has no libyaml);
- ``libyaml``: the strict loader on libyaml's scanner and parser, the collector held off (what
  it reads with where PyYAML was built with libyaml, as its wheels are), composing in Python;
- ``load_scenario``: the whole of :func:`hvballoon.fake.scenario.load_scenario` (reading and
  validating), for scale.

All give the same data (checked in the run). Each is the median of ``--repeat`` runs,
in CPU seconds, with its ratio to the reference. Run from the repository root::

    python benchmarks/scenario_load.py [--sizes 1000 10000] [--repeat 3] [--out result.json]

It prints (and writes) one JSON document.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import emit, median_seconds  # noqa: E402


def scenario_text(vms: int) -> str:
    lines = [
        f"name: vms-{vms}",
        "flavor: kvm",
        f"host: {{name: host01, physical: {vms * 4}GiB, overhead: 2GiB, reserve: 4GiB, swap: 32GiB}}",
        "vms:",
    ]
    for i in range(vms):
        if i % 2:
            lines.append(
                f"  - {{name: vm{i:05d}, memory: 4GiB, used: 1.5GiB, cache: 256MiB,"
                " workload: {kind: random_walk, params: {step: 32MiB}}}"
            )
        else:
            lines += [
                f"  - name: vm{i:05d}",
                "    memory: 4GiB",
                "    used: 1GiB",
                "    workload: {kind: constant}",
            ]
    return "\n".join(lines) + "\n"


def one_size(vms: int, repeat: int, where: Path) -> dict[str, Any]:
    from hvballoon._yamltext import _load_with, build_loader
    from hvballoon.fake.scenario import load_scenario

    text = scenario_text(vms)
    path = where / f"vms-{vms}.yaml"
    path.write_text(text)
    pyyaml, libyaml = build_loader(libyaml=False), build_loader(libyaml=True)

    def before() -> Any:
        loader = pyyaml(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()

    assert before() == _load_with(pyyaml, text) == _load_with(libyaml, text), "the loaders differ"
    reference = median_seconds(before, repeat, cpu=True)
    python = median_seconds(lambda: _load_with(pyyaml, text), repeat, cpu=True)
    ours = median_seconds(lambda: _load_with(libyaml, text), repeat, cpu=True)
    whole = median_seconds(lambda: load_scenario(path), repeat, cpu=True)
    return {
        "vms": vms,
        "bytes": len(text.encode()),
        "before_cpu_seconds": reference,
        "pyyaml_cpu_seconds": python,
        "libyaml_cpu_seconds": ours,
        "load_scenario_cpu_seconds": whole,
        "pyyaml_vs_before": round(python / reference, 3),
        "libyaml_vs_before": round(ours / reference, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_size(n, args.repeat, Path(tmp)) for n in args.sizes]
    return emit("scenario_load", args.out, repeat=args.repeat, sizes=rows)


if __name__ == "__main__":
    sys.exit(main())
