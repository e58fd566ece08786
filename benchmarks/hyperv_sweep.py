"""Round trips and latency of a Hyper-V stats sweep: hvballoon's bulk read vs a naive loop.

Runs against the loopback WinRM peer of the test suite (a real WS-Management server speaking to
the unmodified pywinrm client), answered from the simulator's ``hyperv`` flavour, over Basic on
HTTP and NTLM on HTTPS. For 10 and 200 VMs it measures:

- **bulk**: ``hv.get_stats()`` — one fixed script for every VM, on the session's reused shell;
- **naive**: one ``winrm.Session.run_ps`` per VM (a new shell and, for NTLM, a new handshake
  every call), the way scripts built on pywinrm's convenience API usually do it.

It prints one JSON document: per case the WS-Man requests, HTTP requests (with NTLM's
authentication legs) and median wall time of a whole sweep, and the naive/bulk ratios. Run from
the repository root::

    python benchmarks/hyperv_sweep.py            # about half a minute
    python benchmarks/hyperv_sweep.py --sizes 10 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

USER, PASSWORD = "admin", "bench-Pa55"


def _sweep_costs(server: Any, run: Any, repeats: int) -> dict[str, Any]:
    run()  # warm up (connection, handshake, shell)
    times = []
    server.reset_counts()
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    counts = server.counts()
    stats = server.stats()
    return {
        "ws_requests": round(sum(counts.values()) / repeats, 1),
        "commands": round(counts.get("Command", 0) / repeats, 1),
        "http_requests": round(stats.get("http_requests", 0) / repeats, 1),
        "median_ms": round(statistics.median(times) * 1000, 2),
        "by_action": {k: round(v / repeats, 1) for k, v in sorted(counts.items())},
    }


def measure(transport: str, https: bool, count: int, repeats: int, naive_repeats: int) -> dict[str, Any]:
    import winrm

    import hvballoon
    from hvballoon.backends.hyperv._scripts import READ, render
    from tests.support.hyperv.fakehost import FakeHyperVHost, hyperv_world
    from tests.support.hyperv.scenarios import sweep
    from tests.support.winrm.harness import WinRMServer

    host = FakeHyperVHost(hyperv_world(sweep(count)))
    with WinRMServer(host, transport=transport, https=https, users={USER: PASSWORD}) as server:
        query = f"transport={transport}" + ("" if https else "&scheme=http")
        uri = f"hyperv://{USER}@{server.host}:{server.port}/?{query}"
        with hvballoon.connect(uri, password=PASSWORD, ca_file=server.ca_file) as hv:
            ids = [vm.id for vm in hv.list_vms()]

            def bulk() -> None:
                assert len(hv.get_stats()) == count

            bulk_costs = _sweep_costs(server, bulk, repeats)

        session = winrm.Session(server.endpoint, auth=(USER, PASSWORD), **server.client_options())

        def naive() -> None:
            for vm_id in ids:
                result = session.run_ps(render(READ, {"ids": [vm_id]}))
                assert result.status_code == 0 and json.loads(result.std_out)[0]["Id"] == vm_id

        naive_costs = _sweep_costs(server, naive, naive_repeats)
    return {
        "transport": transport,
        "scheme": "https" if https else "http",
        "vms": count,
        "bulk": bulk_costs,
        "naive": naive_costs,
        "ratio": {
            "ws_requests": round(naive_costs["ws_requests"] / bulk_costs["ws_requests"], 1),
            "http_requests": round(naive_costs["http_requests"] / bulk_costs["http_requests"], 1),
            "latency": round(naive_costs["median_ms"] / bulk_costs["median_ms"], 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 200], help="VM counts (10 200)")
    parser.add_argument("--repeats", type=int, default=20, help="bulk sweeps timed per case (20)")
    parser.add_argument("--naive-repeats", type=int, default=2, help="naive sweeps timed per case (2)")
    args = parser.parse_args(argv)
    results = [
        measure(transport, https, count, args.repeats, args.naive_repeats)
        for transport, https in (("basic", False), ("ntlm", True))
        for count in args.sizes
    ]
    print(
        json.dumps(
            {
                "benchmark": "hyperv_sweep",
                "python": platform.python_version(),
                "machine": platform.machine(),
                "peer": "loopback WinRM server (tests/support/winrm), simulator hyperv flavour",
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
