"""The shared conformance suite, against the vSphere simulator (a fresh one per test), both sweeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hvballoon
from hvballoon.testing.conformance import BackendConformance
from tests.backends.esxi.conftest import connect
from tests.peers.vsphere.harness import VcsimServer

pytestmark = pytest.mark.peer


class TestESXiConformance(BackendConformance):
    @pytest.fixture
    def hv(self, peer: VcsimServer, fast_sweep: bool) -> Iterator[hvballoon.Hypervisor]:
        with connect(peer, fast_sweep=fast_sweep) as session:
            yield session
