"""What moving many Hyper-V targets costs: WinRM commands and requests, bulk vs one by one.

Runs against the loopback WinRM peer of the test suite (the unmodified pywinrm client, a real
WS-Management server), answered from the simulator's ``hyperv`` flavour, over Basic on HTTP and
NTLM on HTTPS. For 50 and 200 VMs (half of them with Dynamic Memory: their maximum is raised;
the static ones are resized to 12 GiB) it measures:

- ``bulk``: ``hv.set_targets({...})`` — one read of every VM's figures and configuration, then
  the moves in as few ``SET_TARGETS`` commands as fit on a command line (``apply`` counts
  those alone);
- ``naive``: ``hv.set_target`` per VM, in the same warm session (each one reads its VM and
  sends its own command).

Per case: WinRM commands, WS-Man requests, HTTP requests (NTLM's authentication legs
included) and wall time, and the naive/bulk ratios. Run from the repository root (it prints one
JSON document)::

    python benchmarks/hyperv_targets.py [--sizes 50 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import emit  # noqa: E402 - the benchmarks' own helper, beside this script

USER, PASSWORD = "admin", "bench-Pa55"
GiB = 1024**3


def _costs(server: Any, host: Any, run: Any) -> dict[str, Any]:
    server.reset_counts()
    host.calls.clear()
    http_before = server.stats().get("http_requests", 0)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    counts = server.counts()
    return {
        "commands": counts.get("Command", 0),
        "ws_requests": sum(counts.values()),
        "http_requests": server.stats().get("http_requests", 0) - http_before,
        "seconds": round(seconds, 4),
        "scripts": dict(sorted(host.calls.items())),
    }


def measure(transport: str, https: bool, count: int) -> dict[str, Any]:
    import hvballoon
    from hvballoon.backend import TargetRequest
    from hvballoon.retry import RetryPolicy
    from tests.support.hyperv.fakehost import FakeHyperVHost, hyperv_world
    from tests.support.hyperv.scenarios import sweep
    from tests.support.winrm.harness import WinRMServer

    host = FakeHyperVHost(hyperv_world(sweep(count)))
    out: dict[str, Any] = {"transport": transport, "scheme": "https" if https else "http", "vms": count}
    with WinRMServer(host, transport=transport, https=https, users={USER: PASSWORD}) as server:
        query = f"transport={transport}" + ("" if https else "&scheme=http")
        uri = f"hyperv://{USER}@{server.host}:{server.port}/?{query}"
        with hvballoon.connect(
            uri, password=PASSWORD, ca_file=server.ca_file, retry=RetryPolicy(max_attempts=1)
        ) as hv:
            stats = hv.get_stats()  # warm: shell open, names known

            def moves(step: int) -> dict[str, int]:
                return {
                    s.vm.name: (s.target_bytes or 0) + step * 2 * GiB
                    if s.vm.extra["dynamic"]
                    else (10 + step) * GiB
                    for s in stats
                }

            def bulk() -> None:
                res = hv.set_targets(moves(1), force=True)
                assert res.ok and len(res.made) == count, res.error

            out["bulk"] = _costs(server, host, bulk)
            vms = {s.vm.name: s.vm for s in stats}
            requests = [TargetRequest(vms[name], size) for name, size in moves(2).items()]

            def apply() -> None:
                assert all(answer is None for answer in hv.backend.apply_targets(requests))

            out["apply"] = _costs(server, host, apply)

            def naive() -> None:
                for name, size in moves(3).items():
                    assert hv.set_target(name, size, force=True).changed

            out["naive"] = _costs(server, host, naive)
    out["naive_vs_bulk"] = {
        k: round(out["naive"][k] / out["bulk"][k], 1)
        for k in ("commands", "ws_requests", "http_requests", "seconds")
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200], help="VM counts (50 200)")
    args = parser.parse_args(argv)
    results = [
        measure(transport, https, count)
        for transport, https in (("basic", False), ("ntlm", True))
        for count in args.sizes
    ]
    peer = "loopback WinRM server (tests/support/winrm), simulator hyperv flavour"
    return emit("hyperv_targets", None, peer=peer, results=results)


if __name__ == "__main__":
    raise SystemExit(main())
