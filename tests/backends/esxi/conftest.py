"""Fixtures for the ESXi backend's tests: a vSphere simulator populated with sensible figures.

Each simulator starts in well under a second once built, so tests that change VMs get a fresh
one (``peer``); read-only tests share a module-wide one (``shared_peer``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import hvballoon
from tests._require import require
from tests.peers.vsphere.harness import VcsimServer, prerequisites

pytestmark = pytest.mark.peer


def vm_figures(name: str, **extra: Any) -> dict[str, Any]:
    """A running 16 GiB VM using 4 GiB, with a 1 GiB reservation and normal shares."""
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


@pytest.fixture(scope="session", autouse=True)
def _vcsim_prerequisites() -> None:
    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))


def connect(peer: VcsimServer, **kw: Any) -> hvballoon.Hypervisor:
    """A session on ``peer`` over https with its CA (or http when the peer serves http)."""
    if peer.https:
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}"
        kw.setdefault("ca_file", str(peer.ca_file))
    else:
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}/?scheme=http"
    return hvballoon.connect(uri, password=peer.password, **kw)


@pytest.fixture(params=[True, False], ids=["fast_sweep", "pyvmomi_sweep"])
def fast_sweep(request: pytest.FixtureRequest) -> bool:
    """Both ways of reading the sweep: hand-written SOAP + ElementTree, and pyvmomi's."""
    return bool(request.param)


@pytest.fixture
def peer() -> Iterator[VcsimServer]:
    """A fresh https simulator per test (tests may change it)."""
    with VcsimServer(FLEET, https=True, hosts=2) as server:
        yield server


@pytest.fixture(scope="module")
def shared_peer() -> Iterator[VcsimServer]:
    """One http simulator per module, for tests that change nothing."""
    with VcsimServer(FLEET, hosts=2) as server:
        yield server
