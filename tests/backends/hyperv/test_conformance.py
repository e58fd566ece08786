"""The shared conformance suite, against the Hyper-V backend talking WinRM to the loopback peer
(Basic over HTTP and NTLM over HTTPS), answered from the simulator's ``hyperv`` flavour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hvballoon.session import Hypervisor
from hvballoon.testing.conformance import BackendConformance
from tests.backends.hyperv.conftest import Peer
from tests.backends.hyperv.fakehost import hyperv_world


class TestHyperVConformance(BackendConformance):
    @pytest.fixture
    def hv(self, peer: Peer) -> Iterator[Hypervisor]:
        """A new session on a fresh ``seed`` world, over each transport of the ``peer`` fixture."""
        peer.host.world = hyperv_world()
        with peer.connect() as session:
            yield session
