"""The conformance suite on the fake backend, in each flavour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hvballoon
from hvballoon.retry import RetryPolicy
from hvballoon.testing.conformance import BackendConformance

INSTANT = RetryPolicy(sleep=lambda _s: None)


class TestFakeKVM(BackendConformance):
    @pytest.fixture
    def hv(self) -> Iterator[hvballoon.Hypervisor]:
        with hvballoon.connect("fake://seed?flavor=kvm", retry=INSTANT) as session:
            yield session


class TestFakeESXi(BackendConformance):
    @pytest.fixture
    def hv(self) -> Iterator[hvballoon.Hypervisor]:
        with hvballoon.connect("fake://seed?flavor=esxi", retry=INSTANT) as session:
            yield session


class TestFakeHyperV(BackendConformance):
    @pytest.fixture
    def hv(self) -> Iterator[hvballoon.Hypervisor]:
        with hvballoon.connect("fake://seed?flavor=hyperv", retry=INSTANT) as session:
            yield session
