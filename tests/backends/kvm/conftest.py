"""Fixtures for the KVM backend's fast tests: libvirt's test driver, no daemon, no guest (the
hosts are written by :mod:`tests.support.libvirt_xml`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import hvballoon
from hvballoon.session import Hypervisor
from tests.support.libvirt_xml import domain_xml, write_node_xml

libvirt = pytest.importorskip("libvirt")


@pytest.fixture
def node_uri(tmp_path: Path) -> str:
    """A small mixed host: running, shut off, balloon-less and period-already-set domains."""
    return write_node_xml(
        tmp_path / "node.xml",
        [
            domain_xml("web01", current_mib=3072),
            domain_xml("web02", memory_mib=8192, current_mib=8192, period=5),
            domain_xml("db01", memory_mib=16384, current_mib=12288),
            domain_xml("off01", current_mib=1024, running=False),
            domain_xml("plain01", memory_mib=1024, balloon="none"),
        ],
    )


@pytest.fixture
def hv() -> Iterator[Hypervisor]:
    """A session on ``test:///default`` (its state is fresh for every test that opens it alone)."""
    with hvballoon.connect("test:///default") as session:
        yield session


@pytest.fixture
def node_hv(node_uri: str) -> Iterator[Hypervisor]:
    with hvballoon.connect(node_uri) as session:
        yield session
