"""What the command's outputs cost at 1,000 and 10,000 VMs, each beside the way it was done
before, in the same run.

For each size, a simulated KVM host of that many 4 GiB VMs:

- ``table``: the ``stats`` table of every VM drawn (to a 200-column console, as when piped) by
  rich (the reference: what ``table()`` returned before) and by :class:`PlainTable
  <hvballoon.cli.tables.PlainTable>` (the same characters, checked in the run), CPU seconds;
- ``suggest``: a tenth of the VMs' names misspelt (``vm00000x``…) and looked up with
  ``find_vms``, with the close names ``hvballoon stats`` prints: now (the first ten suggested),
  and as before (every missing name suggested twice, the names sorted each time: measured on
  ``--sample`` names and scaled linearly to all of them, as it takes minutes at 10,000);
- ``simulate``: ten simulated minutes recorded every 5 s, then its summary and ``--series``
  as before (the whole recording as per-VM lists, ``to_data``, and the whole text built) and
  now (each VM's extremes from the arrays, the text written a VM at a time to a file), CPU
  seconds and the peak of memory allocated meanwhile (``tracemalloc``), the same text (its
  digest) checked in the run.

Run from the repository root::

    python benchmarks/cli_scale.py [--sizes 1000 10000] [--repeat 1] [--sample 50] [--out result.json]

It prints (and writes) one JSON document.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import io
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import emit, fake_host, median_seconds  # noqa: E402


def _drawn(renderable: Any) -> str:
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=200, soft_wrap=False).print(renderable)
    return out.getvalue()


def tables(uri: str, repeat: int) -> dict[str, Any]:
    import hvballoon
    from hvballoon.cli.common import stats_table

    with hvballoon.connect(uri) as hv:
        shown, _ = stats_table(hv.get_stats(), title=uri)
    assert _drawn(shown) == _drawn(shown.rich_table()), "the tables differ"
    rich = median_seconds(lambda: _drawn(shown.rich_table()), repeat, cpu=True)
    ours = median_seconds(lambda: _drawn(shown), repeat, cpu=True)
    return {"rich_seconds": rich, "ours_seconds": ours, "ours_vs_rich": round(ours / rich, 3)}


def _old_close_names(known: list[str], ref: str, limit: int = 3) -> list[str]:
    """``VMIndex.close_names`` as it was: the known names sorted on each call."""
    lowered: dict[str, list[str]] = {}
    for name in sorted(n for n in known if n != ref):
        lowered.setdefault(name.lower(), []).append(name)
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(ref.lower())
    scored = []
    for low in lowered:
        matcher.set_seq1(low)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            score = matcher.ratio()
            if score >= 0.6:
                scored.append((-score, low))
    return [name for _, low in sorted(scored) for name in lowered[low]][:limit]


def suggestions(uri: str, vms: int, sample: int) -> dict[str, Any]:
    import hvballoon
    from hvballoon._vmindex import SUGGESTED_MISSES

    missing = [f"vm{i:05d}x" for i in range(0, vms, 10)]
    with hvballoon.connect(uri) as hv:
        known = [vm.name for vm in hv.list_vms()]
        began = time.process_time()
        _, absent = hv.find_vms(missing)
        close = {m: hv.close_matches(m) for m in absent[:SUGGESTED_MISSES]}
        ours = time.process_time() - began
    assert absent == missing and len(close) == SUGGESTED_MISSES
    began = time.process_time()
    for ref in missing[:sample]:
        for _ in range(2):  # the look-up's error, then the command's message
            _old_close_names(known, ref)
    before = (time.process_time() - began) * len(missing) / sample
    return {
        "missing": len(missing),
        "before_seconds": round(before, 3),
        "before_measured_on": sample,
        "ours_seconds": round(ours, 3),
        "ours_vs_before": round(ours / before, 4),
    }


def _measured(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """``fn()``, the CPU seconds it took, and the peak of memory it allocated (a second call,
    traced by ``tracemalloc``, which slows it down)."""
    began = time.process_time()
    result = fn()
    seconds = time.process_time() - began
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, round(seconds, 3), peak


def simulate(uri: str) -> dict[str, Any]:
    from hvballoon.cli.simulate import summarize
    from hvballoon.fake.record import record
    from hvballoon.fake.scenario import load_scenario
    from hvballoon.fake.world import World

    world = World(load_scenario(uri.removeprefix("fake://")))
    rec = record(world, every=5)
    world.advance(600)

    def before() -> str:  # the summary's figures and --series (to_json built the whole text)
        data = rec.to_data()
        [max(data["vms"][g.label]["demand_bytes"]) for g in world.guests.values()]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()

    def now() -> str:  # the summary's figures and --series written to a file as it is made
        summarize(world, rec, {"host": rec.data()["host"]})
        sink = _Hashed()
        rec.write_json(sink)  # type: ignore[arg-type]
        return sink.digest.hexdigest()

    old_digest, old_s, old_peak = _measured(before)
    new_digest, new_s, new_peak = _measured(now)
    assert old_digest == new_digest, "the series differ"
    return {
        "samples": len(rec.t),
        "before_seconds": old_s,
        "ours_seconds": new_s,
        "before_peak_bytes": old_peak,
        "ours_peak_bytes": new_peak,
        "ours_vs_before_peak": round(new_peak / old_peak, 3),
    }


class _Hashed:
    """A text file that keeps only the digest of what is written to it."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, text: str) -> int:
        self.digest.update(text.encode())
        return len(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--sample", type=int, default=50, help="missing names timed the old way")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        for vms in args.sizes:
            uri = fake_host(vms, Path(tmp), gib_per_vm=3)
            sizes.append(
                {
                    "vms": vms,
                    "table": tables(uri, args.repeat),
                    "suggest": suggestions(uri, vms, args.sample),
                    "simulate": simulate(uri),
                }
            )
    return emit("cli_scale", args.out, repeat=args.repeat, sizes=sizes)


if __name__ == "__main__":
    raise SystemExit(main())
