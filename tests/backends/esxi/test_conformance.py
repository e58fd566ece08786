"""The shared conformance suite, against the vSphere simulator (a fresh one per test), both sweeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hvballoon
from hvballoon.testing.conformance import BackendConformance, KindRuleTests, RestingVMTests
from tests.support.vsphere.fleet import connect, vm_figures
from tests.support.vsphere.harness import VcsimServer

pytestmark = pytest.mark.peer


class TestESXiConformance(BackendConformance, RestingVMTests):
    @pytest.fixture
    def hv(self, peer: VcsimServer, fast_sweep: bool) -> Iterator[hvballoon.Hypervisor]:
        with connect(peer, fast_sweep=fast_sweep) as session:
            yield session


#: One running and one powered-off VM, unreserved and unlimited with normal shares (ESXi's
#: defaults), and a running one with memory hot-add on (up to 64 GiB, by 128 MB), so every
#: rule case of the ESXi kind has a VM to act on.
RULES_FLEET = [
    vm_figures(
        "on01",
        memoryAllocation={"reservation": 0, "limit": -1, "shares": {"level": "normal", "shares": 163840}},
        quickStats={"guestMemoryUsage": 3072, "hostMemoryUsage": 6000, "balloonedMemory": 0},
    ),
    vm_figures(
        "off01",
        powerState="poweredOff",
        memoryAllocation={"reservation": 0, "limit": -1, "shares": {"level": "normal", "shares": 163840}},
        quickStats={},
    ),
    vm_figures(
        "grow01",
        memoryAllocation={"reservation": 0, "limit": -1, "shares": {"level": "normal", "shares": 163840}},
        quickStats={"guestMemoryUsage": 3072, "hostMemoryUsage": 6000, "balloonedMemory": 256},
        memoryHotAddEnabled=True,
        hotPlugMemoryLimit=65536,
        hotPlugMemoryIncrementSize=128,
    ),
]


class TestESXiRules(KindRuleTests):
    """The ESXi kind's rules against the vSphere simulator (a fresh one per case)."""

    kind_name = "esxi"

    @pytest.fixture
    def hv(self) -> Iterator[hvballoon.Hypervisor]:
        with VcsimServer(RULES_FLEET) as server, connect(server) as session:
            yield session
