"""The ESXi tests' fleet: five VMs with sensible memory figures, and a session on a simulator.

Used by the ESXi backend's tests, the hardening tests and matrix, and the benchmarks::

    from tests.support.vsphere.fleet import FLEET, connect
    from tests.support.vsphere.harness import VcsimServer

    with VcsimServer(FLEET, https=True) as peer, connect(peer) as hv:
        print([vm.name for vm in hv.list_vms()])
"""

from __future__ import annotations

from typing import Any

import hvballoon

from .harness import VcsimServer

__all__ = ["FLEET", "connect", "vm_figures"]


def vm_figures(name: str, **extra: Any) -> dict[str, Any]:
    """A running 16 GiB VM using 4 GiB, with a 1 GiB reservation and normal shares.

    >>> vm_figures("web01", memoryMB=8192)["memoryMB"]
    8192
    """
    vm: dict[str, Any] = {
        "name": name,
        "powerState": "poweredOn",
        "memoryMB": 16384,
        "memoryAllocation": {
            "reservation": 1024,
            "limit": -1,
            "shares": {"level": "normal", "shares": 163840},
        },
        "quickStats": {
            "guestMemoryUsage": 4096,
            "hostMemoryUsage": 8300,
            "balloonedMemory": 512,
            "swappedMemory": 64,
            "compressedMemory": 2048,  # KB
            "sharedMemory": 100,
            "privateMemory": 8000,
            "consumedOverheadMemory": 90,
        },
    }
    vm.update(extra)
    return vm


FLEET: list[dict[str, Any]] = [
    vm_figures("web01"),
    vm_figures(
        "web02",
        quickStats={"guestMemoryUsage": 1000, "hostMemoryUsage": 2000, "balloonedMemory": 0},
    ),
    vm_figures(
        "db01",
        memoryMB=32768,
        memoryAllocation={"reservation": 0, "limit": 24576, "shares": {"level": "custom", "shares": 5000}},
    ),
    vm_figures("idle01", powerState="poweredOff", quickStats={}),
    vm_figures("notools01", quickStats={"hostMemoryUsage": 3000}),
]


def connect(peer: VcsimServer, **kw: Any) -> hvballoon.Hypervisor:
    """A session on ``peer`` over https with its CA (or http when the peer serves http)."""
    if peer.https:
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}"
        kw.setdefault("ca_file", str(peer.ca_file))
    else:
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}/?scheme=http"
    return hvballoon.connect(uri, password=peer.password, **kw)
