"""How long a memory sweep of every VM takes through the vSphere API, six ways, one simulator.

Against the same vSphere simulator (the test peer, built from Debian's govmomi), at 1,000 VMs
(``--sizes 1000 10000`` for more; ``--large`` adds 3,000), it times:

- ``hvballoon``: ``hv.get_stats()`` through the ESXi backend (models included), with its fast
  sweep (hand-written SOAP read with ElementTree, the default), which asks for page k+1 while
  it parses page k;
- ``hvballoon_sequential``: the same fast sweep, one page after the other (what the overlap
  saves);
- ``hvballoon_pyvmomi``: the same with ``fast_sweep=False`` (pyvmomi's deserializer);
- ``pyvmomi_bulk``: raw pyvmomi, one ``RetrievePropertiesEx`` over a ContainerView with the
  same property paths (+ ``ContinueRetrievePropertiesEx``), no models;
- ``pyvmomi_naive``: the attribute loop (``vm.summary.quickStats.guestMemoryUsage`` …), one
  ``Fetch`` per attribute per VM (``--skip-naive`` leaves it out: it takes ~20 s per 1,000);
- ``go_govmomi``: ``benchmarks/esxi_go/main.go``, the same retrieval from Go.

Round trips are the SOAP requests the simulator counted during the sweep. Run::

    python benchmarks/esxi_sweep.py [--sizes 1000 10000] [--large] [--skip-naive] [--repeat 3] [--out result.json]

and it prints (and writes) one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _report import emit  # noqa: E402 - the benchmarks' own helper, beside this script

from tests.support.vsphere import harness  # noqa: E402

GO_SOURCE = Path(__file__).resolve().parent / "esxi_go"
VM_PATHS = [
    "name",
    "config.instanceUuid",
    "runtime.powerState",
    "runtime.host",
    "runtime.connectionState",
    "config.template",
    "config.hardware.memoryMB",
    "config.memoryAllocation",
    *(
        f"summary.quickStats.{f}"
        for f in (
            "guestMemoryUsage",
            "hostMemoryUsage",
            "balloonedMemory",
            "swappedMemory",
            "compressedMemory",
            "sharedMemory",
            "privateMemory",
            "consumedOverheadMemory",
        )
    ),
]


def fleet(n: int) -> list[dict[str, Any]]:
    """The design's typical VM, n times: 16 GiB configured, using 8 GiB or less."""
    return [
        {
            "name": f"vm{i:05d}",
            "memoryMB": 16384,
            "memoryAllocation": {
                "reservation": 0,
                "limit": -1 if i % 3 else 12288,
                "shares": {"level": "normal", "shares": 163840},
            },
            "quickStats": {
                "guestMemoryUsage": 2048 + i % 6000,
                "hostMemoryUsage": 8000,
                "balloonedMemory": i % 700,
                "swappedMemory": i % 50,
                "compressedMemory": 1024 * (i % 9),
                "sharedMemory": 100,
                "privateMemory": 7900,
                "consumedOverheadMemory": 90,
            },
        }
        for i in range(n)
    ]


def build_go() -> Path:
    """Build the Go client like the simulator (GOPATH mode, Debian's govmomi), cached by source hash."""
    import hashlib

    digest = hashlib.sha256((GO_SOURCE / "main.go").read_bytes()).hexdigest()[:16]
    binary = harness.CACHE_DIR / f"esxi-go-{digest}"
    if not binary.is_file():
        harness.CACHE_DIR.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=GO_SOURCE,
            env=harness._go_env(),
            capture_output=True,
            text=True,
            timeout=harness.BUILD_TIMEOUT,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"go build failed:\n{proc.stderr}")
    return binary


def timed(peer: harness.VcsimServer, fn: Callable[[], int], repeat: int) -> dict[str, Any]:
    times, trips, count = [], 0, 0
    for _ in range(repeat):
        peer.reset_counts()
        began = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - began)
        trips = sum(peer.counts().values())
    return {"seconds": statistics.median(times), "all_seconds": times, "round_trips": trips, "vms": count}


def run(n: int, *, hosts: int, repeat: int, naive: bool) -> dict[str, Any]:
    from pyVim.connect import SmartConnect
    from pyVmomi import vim, vmodl

    import hvballoon

    go = build_go()
    out: dict[str, Any] = {"vms": n, "hosts": hosts}
    with harness.VcsimServer(fleet(n), hosts=hosts) as peer:
        out["simulator_start_seconds"] = round(peer.start_seconds, 3)

        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}/?scheme=http"
        with hvballoon.connect(uri, password=peer.password, timeout=120) as hv:
            hv.get_stats()  # warm: host names cached, connection pooled
            out["hvballoon"] = timed(peer, lambda: len(hv.get_stats()), repeat)
            hv.backend.client.overlap_pages = False
            out["hvballoon_sequential"] = timed(peer, lambda: len(hv.get_stats()), repeat)
        with hvballoon.connect(uri, password=peer.password, fast_sweep=False, timeout=120) as hv:
            hv.get_stats()
            out["hvballoon_pyvmomi"] = timed(peer, lambda: len(hv.get_stats()), repeat)

        si = SmartConnect(
            host=peer.host, port=peer.port, user=peer.username, pwd=peer.password, protocol="http"
        )
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine, vim.HostSystem], True
        )
        pcq = vmodl.query.PropertyCollector
        spec = pcq.FilterSpec(
            objectSet=[
                pcq.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        pcq.TraversalSpec(name="v", path="view", skip=False, type=vim.view.ContainerView)
                    ],
                )
            ],
            propSet=[
                pcq.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PATHS),
                pcq.PropertySpec(type=vim.HostSystem, pathSet=["name"]),
            ],
        )
        pc = content.propertyCollector

        def bulk() -> int:
            rows = []
            result = pc.RetrievePropertiesEx([spec], pcq.RetrieveOptions(maxObjects=1000))
            while result is not None:
                rows.extend({p.name: p.val for p in o.propSet} for o in result.objects)
                if not result.token:
                    break
                result = pc.ContinueRetrievePropertiesEx(result.token)
            return sum(1 for r in rows if "config.hardware.memoryMB" in r)

        bulk()
        out["pyvmomi_bulk"] = timed(peer, bulk, repeat)

        vm_view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)

        def naive_loop() -> int:
            count = 0
            for vm in vm_view.view:
                qs = vm.summary.quickStats
                _ = (
                    vm.name,
                    vm.config.instanceUuid,
                    vm.runtime.powerState,
                    vm.runtime.host.name,
                    vm.config.hardware.memoryMB,
                    vm.config.memoryAllocation.limit,
                    qs.guestMemoryUsage,
                    qs.hostMemoryUsage,
                    qs.balloonedMemory,
                    qs.swappedMemory,
                    qs.compressedMemory,
                )
                count += 1
            return count

        if naive:
            out["pyvmomi_naive"] = timed(peer, naive_loop, 1)

        url = f"http://{peer.username}:{peer.password}@{peer.host}:{peer.port}/sdk"
        peer.reset_counts()
        proc = subprocess.run(
            [str(go), "-url", url, "-repeat", str(repeat)],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        go_result = json.loads(proc.stdout)
        counts = peer.counts()
        sweep_trips = counts.get("RetrievePropertiesEx", 0) + counts.get("ContinueRetrievePropertiesEx", 0)
        go_result["round_trips"] = sweep_trips // repeat
        out["go_govmomi"] = go_result

    base = out["pyvmomi_bulk"]["seconds"]
    out["ratios"] = {
        "hvballoon_vs_pyvmomi_bulk": round(out["hvballoon"]["seconds"] / base, 3),
        "hvballoon_vs_go": round(out["hvballoon"]["seconds"] / out["go_govmomi"]["seconds"], 3),
        "hvballoon_vs_sequential": round(
            out["hvballoon"]["seconds"] / out["hvballoon_sequential"]["seconds"], 3
        ),
        "hvballoon_pyvmomi_vs_pyvmomi_bulk": round(out["hvballoon_pyvmomi"]["seconds"] / base, 3),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000], help="numbers of VMs (default 1000)")
    ap.add_argument("--large", action="store_true", help="also run at 3,000 VMs")
    ap.add_argument("--skip-naive", action="store_true", help="leave out the per-attribute loop")
    ap.add_argument("--repeat", type=int, default=3, help="timed sweeps per method (median reported)")
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    reasons = harness.prerequisites()
    if reasons:
        print("; ".join(reasons), file=sys.stderr)
        return 2
    sizes = sorted(set(args.sizes) | ({3000} if args.large else set()))
    runs = [run(n, hosts=args.hosts, repeat=args.repeat, naive=not args.skip_naive) for n in sizes]
    return emit("esxi_sweep", args.out, runs=runs)


if __name__ == "__main__":
    raise SystemExit(main())
