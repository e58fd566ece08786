"""The shared conformance suite and the KVM kind's rule cases against the in-test QMP server (a
Proxmox-like node of four VMs).

The same suite runs on real QEMU guests in ``test_real_guest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from hvballoon.session import Hypervisor
from hvballoon.testing.conformance import BackendConformance, KindRuleTests
from tests.support.qmp_server import connect


class TestQMPInTestServer(BackendConformance):
    # the servers run in this test process: its resident memory (the "QEMU's") moves between reads
    volatile_fields: ClassVar[frozenset[str]] = BackendConformance.volatile_fields | {"host_consumed_bytes"}

    @pytest.fixture
    def hv(self, node: str) -> Iterator[Hypervisor]:
        with connect(node, stats_period=2) as session:
            session.get_stats()  # the first sight arms the period; the guests answer at once
            yield session


class TestQMPInTestServerRules(KindRuleTests):
    """The KVM kind's rules through QMP: running VMs with and without a balloon. (A VM whose
    guest is off still has its QEMU, but QMP cannot change what the kind allows then: the
    maximum and deflate-on-OOM are on QEMU's command line; see test_stats_and_config.)"""

    kind_name = "kvm"
    rule_needs: ClassVar[frozenset[str] | None] = frozenset({"running", "running/no-balloon"})

    @pytest.fixture
    def hv(self, node: str) -> Iterator[Hypervisor]:
        with connect(node, stats_period=2) as session:
            session.get_stats()
            yield session
