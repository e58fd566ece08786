"""Fixtures for the KVM backend's fast tests: libvirt's test driver, no daemon, no guest.

``test:///default`` is libvirt's built-in fake host (one running domain, "test", 8 GiB maximum
with its balloon at 2 GiB). :func:`write_node_xml` writes a custom ``test:///<file>`` host with
as many domains as a test needs, running or shut off, with or without a balloon.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

import hvballoon
from hvballoon.session import Hypervisor

libvirt = pytest.importorskip("libvirt")

_TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


def domain_xml(
    name: str,
    *,
    memory_mib: int = 4096,
    current_mib: int | None = None,
    running: bool = True,
    balloon: str = "virtio",
    period: int | None = None,
) -> str:
    stats = f"<stats period='{period}'/>" if period is not None else ""
    state = "" if running else "<test:runstate>5</test:runstate>"
    return (
        f"<domain type='test' xmlns:test='{_TEST_NS}'><name>{escape(name)}</name>"
        f"<memory unit='MiB'>{memory_mib}</memory>"
        f"<currentMemory unit='MiB'>{current_mib or memory_mib}</currentMemory>"
        "<os><type>hvm</type></os>"
        f"<devices><memballoon model='{balloon}'>{stats}</memballoon></devices>{state}</domain>"
    )


def write_node_xml(path: Path, domains: list[str]) -> str:
    """Write a test-driver host with these domain definitions; its ``test:///`` URI."""
    path.write_text("<node>\n" + "\n".join(domains) + "\n</node>\n")
    return f"test://{path}"


def fleet(n: int) -> list[str]:
    """``n`` running 4 GiB domains, balloons at 2-4 GiB (the sweep benchmark uses 1,000)."""
    return [domain_xml(f"vm{i:04d}", current_mib=2048 + (i % 5) * 512) for i in range(n)]


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
