"""The conformance suite on the fake backend, in each flavour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hvballoon
from hvballoon.retry import RetryPolicy
from hvballoon.testing.cases import rules_scenario
from hvballoon.testing.conformance import BackendConformance, KindRuleTests, RestingVMTests, StatsTests

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


def _rules_session(flavor: str) -> Iterator[hvballoon.Hypervisor]:
    from hvballoon.fake.world import World

    world = World(rules_scenario(flavor), flavor=flavor)
    with hvballoon.connect(f"fake://?flavor={flavor}", world=world, retry=INSTANT) as session:
        yield session


class TestFakeKVMRules(KindRuleTests):
    kind_name = "kvm"

    @pytest.fixture
    def hv(self) -> Iterator[hvballoon.Hypervisor]:
        yield from _rules_session("kvm")


class TestFakeESXiRules(KindRuleTests):
    kind_name = "esxi"

    @pytest.fixture
    def hv(self) -> Iterator[hvballoon.Hypervisor]:
        yield from _rules_session("esxi")


class TestFakeHyperVRules(KindRuleTests):
    kind_name = "hyperv"

    @pytest.fixture
    def hv(self) -> Iterator[hvballoon.Hypervisor]:
        yield from _rules_session("hyperv")


class TestFakeStatsInEveryPowerState(StatsTests, RestingVMTests):
    """The stats tests on each flavour's rules world, whose VMs include powered-off ones (the
    built-in worlds' all run)."""

    @pytest.fixture(params=["kvm", "esxi", "hyperv"])
    def hv(self, request: pytest.FixtureRequest) -> Iterator[hvballoon.Hypervisor]:
        yield from _rules_session(request.param)
