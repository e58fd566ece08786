"""The shared conformance suite against libvirt's test driver (default host and a custom one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import hvballoon
from hvballoon.session import Hypervisor
from hvballoon.testing.conformance import BackendConformance, KindRuleTests, RestingVMTests
from tests.support.libvirt_xml import domain_xml, write_node_xml


class TestKVMTestDefault(BackendConformance):
    @pytest.fixture
    def hv(self) -> Iterator[Hypervisor]:
        with hvballoon.connect("test:///default") as session:
            yield session


class TestKVMTestNodeXML(BackendConformance, RestingVMTests):
    @pytest.fixture
    def hv(self, tmp_path: Path) -> Iterator[Hypervisor]:
        uri = write_node_xml(
            tmp_path / "node.xml",
            [
                domain_xml("web01", current_mib=3072),
                domain_xml("db01", memory_mib=16384, current_mib=12288, period=5),
                domain_xml("off01", current_mib=1024, running=False),
                domain_xml("plain01", memory_mib=1024, balloon="none"),
            ],
        )
        with hvballoon.connect(uri) as session:
            yield session


class TestKVMTestDriverRules(KindRuleTests):
    """The KVM kind's rules against libvirt's test driver: running, shut off and balloon-less."""

    kind_name = "kvm"

    @pytest.fixture
    def hv(self, tmp_path: Path) -> Iterator[Hypervisor]:
        uri = write_node_xml(
            tmp_path / "node.xml",
            [
                domain_xml("on01", memory_mib=16384, current_mib=8192, period=5),
                domain_xml("off01", memory_mib=16384, current_mib=4096, running=False),
                domain_xml("plain01", memory_mib=4096, balloon="none"),
                domain_xml("numa01", memory_mib=8192, running=False, numa_nodes=2),
                domain_xml("hotplug01", memory_mib=8192, running=False, max_memory_mib=16384),
                domain_xml(
                    "huge01",
                    memory_mib=4096,
                    running=False,
                    memory_backing="<hugepages><page size='1' unit='G'/></hugepages>",
                ),
            ],
        )
        with hvballoon.connect(uri) as session:
            yield session
