"""What the host picture costs next to the VM sweep it sums, on each real peer of the test suite.

For each backend it times, in the same run against the same peer:

- ``get_stats``: the VM sweep (the reference);
- ``get_host_stats``: the host picture, reading the VMs itself (ESXi: hosts and VMs in one
  ``RetrievePropertiesEx``; Hyper-V: one script; KVM: the sweep plus one host call);
- ``get_host_stats(vm_stats=…)``: the host picture summing a sweep already read, what ``watch``,
  the exporter and the controller do (the host's own figures only);

and reports each as a ratio to ``get_stats`` together with the requests the peer counted
(SOAP requests on the vSphere simulator, WS-Man commands on the WinRM peer). Peers: the vSphere
simulator with 1,000 VMs on 4 hosts, libvirt's test driver with 1,000 domains, the loopback
WinRM peer with 200 VMs over Basic/HTTP. Run from the repository root::

    python benchmarks/host_stats.py [--repeat 5] [--out result.json]

It prints (and writes) one JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hvballoon  # noqa: E402


def _time(fn: Callable[[], Any], repeat: int, counts: Callable[[], int] | None = None) -> dict[str, Any]:
    fn()  # warm: connections, caches
    times, requests = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
        if counts is not None:
            requests = counts()
    out: dict[str, Any] = {"seconds": round(statistics.median(times), 5)}
    if requests is not None:
        out["requests"] = requests
    return out


def _three(
    hv: Any, repeat: int, counts: Callable[[], int] | None, reset: Callable[[], None] | None
) -> dict[str, Any]:
    def counted(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            if reset is not None:
                reset()
            return fn()

        return run

    sweep = hv.get_stats()
    out = {
        "get_stats": _time(counted(hv.get_stats), repeat, counts),
        "get_host_stats": _time(counted(hv.get_host_stats), repeat, counts),
        "get_host_stats_given_sweep": _time(
            counted(lambda: hv.get_host_stats(vm_stats=sweep)), repeat, counts
        ),
    }
    ref = out["get_stats"]["seconds"]
    out["ratio_host_to_sweep"] = round(out["get_host_stats"]["seconds"] / ref, 3)
    out["ratio_given_sweep_to_sweep"] = round(out["get_host_stats_given_sweep"]["seconds"] / ref, 3)
    out["vms"] = len(sweep)
    out["hosts"] = len(hv.get_host_stats(vm_stats=sweep))
    return out


def esxi(repeat: int) -> dict[str, Any]:
    from benchmarks.esxi_sweep import fleet
    from tests.support.vsphere.harness import VcsimServer

    vms = [{**vm, "host": i % 4} for i, vm in enumerate(fleet(1000))]
    figures = [{"memoryMB": 1024 * 1024, "overallMemoryUsage": 700_000}] * 4
    with VcsimServer(vms, hosts=4, host_figures=figures) as peer:
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}/?scheme=http"
        with hvballoon.connect(uri, password=peer.password) as hv:
            return _three(hv, repeat, lambda: sum(peer.counts().values()), peer.reset_counts)


def kvm(repeat: int) -> dict[str, Any]:
    from tests.support.libvirt_xml import fleet, write_node_xml

    with tempfile.TemporaryDirectory() as tmp:
        uri = write_node_xml(Path(tmp) / "node.xml", fleet(1000))
        with hvballoon.connect(uri) as hv:
            return _three(hv, repeat, None, None)


def hyperv(repeat: int) -> dict[str, Any]:
    from tests.support.hyperv.fakehost import FakeHyperVHost, hyperv_world
    from tests.support.hyperv.scenarios import sweep
    from tests.support.winrm.harness import WinRMServer

    user, password = "admin", "bench-Pa55"
    host = FakeHyperVHost(hyperv_world(sweep(200)))
    with WinRMServer(host, transport="basic", https=False, users={user: password}) as server:
        uri = f"hyperv://{user}@{server.host}:{server.port}/?transport=basic&scheme=http"
        with hvballoon.connect(uri, password=password) as hv:
            return _three(hv, repeat, lambda: server.counts().get("Command", 0), server.reset_counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {
        "python": platform.python_version(),
        "esxi_vcsim_1000_vms_4_hosts": esxi(args.repeat),
        "kvm_test_driver_1000_domains": kvm(args.repeat),
        "hyperv_winrm_peer_200_vms": hyperv(args.repeat),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
