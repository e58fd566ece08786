"""How many libvirt calls, and how long, one memory sweep of every domain costs: hvballoon vs naive.

Two peers:

- libvirt's test driver with a custom host of 1,000 running domains (``test:///<tmp>/node.xml``),
  which has no bulk balloon group: hvballoon falls back to per-domain calls there, so this
  measures the fallback's overhead against the naive loop;
- with ``--real N``, N real tiny guests booted by the test peer (``tests/support/kvm_guest``,
  libvirt's embedded QEMU driver; needs root and what ``scripts/setup.d/kvm.sh`` installs),
  where hvballoon's sweep is one ``getAllDomainStats(STATE | BALLOON)``.

Two ways per peer:

- ``hvballoon``: ``hv.get_stats()`` (models included). Its first sweep also reads each running
  domain's definition once (and switches an off stats period on): reported separately;
- ``naive``: ``conn.listAllDomains()`` then ``memoryStats()`` + ``info()`` per domain, no models.

And the marks (``test_driver_marks``, every other domain marked): ``hv.get_marks(key)`` (one
listing of the active domains and one ``virDomainGetMetadata`` each) against reading each
active domain's whole live XML (``XMLDesc``) and finding the mark in it.

Calls are counted by wrapping the libvirt connection and the domain objects it hands out;
``name()``, ``UUIDString()`` and ``ID()`` read the object itself (no round trip) and are
counted apart as ``local``. Run::

    python benchmarks/kvm_sweep.py [--domains 1000] [--repeat 5] [--real 2] [--out result.json]

and it prints (and writes) one JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import libvirt  # noqa: E402

import hvballoon  # noqa: E402

LOCAL = frozenset({"name", "UUIDString", "ID", "UUID"})


class Counted:
    """A libvirt connection or domain whose method calls are counted (results wrapped too)."""

    def __init__(self, target: Any, counter: Counter[str]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_counter", counter)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        counter = self._counter

        def call(*args: Any, **kw: Any) -> Any:
            counter["local" if name in LOCAL else "remote"] += 1
            counter[f"{name}"] += 1
            args = tuple(_unwrap(a) for a in args)
            return _wrap(attr(*args, **kw), counter)

        return call


def _unwrap(value: Any) -> Any:
    if isinstance(value, Counted):
        return value._target
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _wrap(value: Any, counter: Counter[str]) -> Any:
    if isinstance(value, libvirt.virDomain):
        return Counted(value, counter)
    if isinstance(value, list):
        return [_wrap(v, counter) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v, counter) for v in value)
    return value


def write_node(path: Path, n: int) -> str:
    parts = ["<node>"]
    for i in range(n):
        parts.append(
            f"<domain type='test'><name>vm{i:04d}</name><memory unit='MiB'>4096</memory>"
            f"<currentMemory unit='MiB'>{2048 + (i % 5) * 512}</currentMemory><os><type>hvm</type></os>"
            "<devices><memballoon model='virtio'/></devices></domain>"
        )
    parts.append("</node>")
    path.write_text("\n".join(parts))
    return f"test://{path}"


def _sweeps(fn: Any, counter: Counter[str], repeat: int) -> dict[str, Any]:
    walls, calls = [], []
    for _ in range(repeat):
        counter.clear()
        start = time.perf_counter()
        n = fn()
        walls.append(time.perf_counter() - start)
        calls.append(dict(counter))
    return {
        "domains": n,
        "wall_seconds_median": round(statistics.median(walls), 4),
        "wall_seconds_min": round(min(walls), 4),
        "remote_calls_per_sweep": calls[-1].get("remote", 0),
        "local_calls_per_sweep": calls[-1].get("local", 0),
        "calls_by_name": {k: v for k, v in sorted(calls[-1].items()) if k not in ("local", "remote")},
    }


def measure(uri: str, repeat: int, **connect: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": uri}
    with hvballoon.connect(uri, **connect) as hv:
        counter: Counter[str] = Counter()
        link = hv.backend.link  # type: ignore[attr-defined]
        link._native = Counted(link._native, counter)
        first = _sweeps(lambda: len(hv.get_stats()), counter, 1)
        out["hvballoon_first_sweep"] = first
        out["hvballoon"] = _sweeps(lambda: len(hv.get_stats()), counter, repeat)
        raw = Counted(link._native._target, counter)

        def naive() -> int:
            rows = []
            for dom in raw.listAllDomains(0):
                info = dom.info()
                stats = dom.memoryStats() if info[0] == libvirt.VIR_DOMAIN_RUNNING else {}
                rows.append((dom.name(), info, stats))
            return len(rows)

        out["naive"] = _sweeps(naive, counter, repeat)
    return out


MARK = "hvballoon.controller.before"


def measure_marks(uri: str, repeat: int, **connect: Any) -> dict[str, Any]:
    """``hv.get_marks`` of every domain (every other one marked) against reading each domain's
    whole live XML and finding the mark in it (what a reader without the metadata API does)."""
    import xml.etree.ElementTree as ET

    out: dict[str, Any] = {"uri": uri}
    with hvballoon.connect(uri, **connect) as hv:
        vms = hv.list_vms()
        for vm in vms[::2]:
            hv.set_mark(vm, MARK, "8589934592")
        counter: Counter[str] = Counter()
        link = hv.backend.link  # type: ignore[attr-defined]
        link._native = Counted(link._native, counter)
        out["marked"] = len(vms[::2])
        out["hvballoon"] = _sweeps(lambda: len(hv.get_marks(MARK)), counter, repeat)
        raw = Counted(link._native._target, counter)

        def by_xml() -> int:
            found = 0
            for dom in raw.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                root = ET.fromstring(dom.XMLDesc(0))
                found += any(el.get("key") == MARK for el in root.iterfind("./metadata/*"))
            return found

        out["whole_xml"] = _sweeps(by_xml, counter, repeat)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--real", type=int, default=0, help="also boot N real guests (root)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda *_: None, None)
    result: dict[str, Any] = {
        "benchmark": "kvm_sweep",
        "command": " ".join(["python", "benchmarks/kvm_sweep.py", *sys.argv[1:]]),
        "python": platform.python_version(),
        "libvirt": libvirt.getVersion(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="hvb-kvm-bench-") as tmp:
        uri = write_node(Path(tmp) / "node.xml", args.domains)
        result["test_driver"] = measure(uri, args.repeat)
        result["test_driver_marks"] = measure_marks(uri, args.repeat)
    if args.real:
        from tests.support.kvm_guest.harness import KvmGuestHarness, prerequisites

        reasons = prerequisites()
        if reasons:
            result["real_guests"] = {"skipped": "; ".join(reasons)}
        else:
            with KvmGuestHarness() as h:
                guests = [h.boot(f"hvb-bench-{i}", 256, wait=True, timeout=120) for i in range(args.real)]
                try:
                    result["real_guests"] = measure(h.uri, args.repeat, stats_period=2)
                finally:
                    h.destroy(*guests)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
