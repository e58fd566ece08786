"""The shared conformance suite, against the Hyper-V backend talking WinRM to the loopback peer
(Basic over HTTP and NTLM over HTTPS), answered from the simulator's ``hyperv`` flavour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hvballoon.session import Hypervisor
from hvballoon.testing.cases import rules_scenario
from hvballoon.testing.conformance import BackendConformance, KindRuleTests, RestingVMTests, StatsTests
from tests.support.hyperv import scenarios
from tests.support.hyperv.fakehost import hyperv_world
from tests.support.hyperv.peer import Peer

pytestmark = pytest.mark.peer  # the loopback WinRM server


class TestHyperVConformance(BackendConformance):
    @pytest.fixture
    def hv(self, peer: Peer) -> Iterator[Hypervisor]:
        """A new session on a fresh ``seed`` world, over each transport of the ``peer`` fixture."""
        peer.host.world = hyperv_world()
        with peer.connect() as session:
            yield session


class TestHyperVRules(KindRuleTests):
    """The Hyper-V kind's rules against the WinRM peer, whose host refuses what Set-VMMemory
    refuses (independently of hvballoon's rules): Dynamic Memory and static VMs, running and off."""

    kind_name = "hyperv"

    @pytest.fixture
    def hv(self, peer: Peer) -> Iterator[Hypervisor]:
        peer.host.world = hyperv_world(rules_scenario("hyperv"))
        with peer.connect() as session:
            yield session


class TestHyperVResting(StatsTests, RestingVMTests):
    """Static and Dynamic Memory VMs in each state of Hyper-V's that runs no guest — Off, Saved
    and Paused — beside a running one, as the peer's Get-VM reports them (MemoryAssigned 0 once
    the memory is released, no MemoryDemand or MemoryStatus without a running guest)."""

    @pytest.fixture
    def hv(self, peer: Peer) -> Iterator[Hypervisor]:
        peer.host.world = hyperv_world(scenarios.idle())
        with peer.connect() as session:
            yield session
