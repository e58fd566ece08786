"""Hosts for libvirt's built-in test driver (``test:///<file>``): no daemon, no guest.

``test:///default`` is libvirt's own fake host (one running domain, "test", 8 GiB maximum with
its balloon at 2 GiB). :func:`write_node_xml` writes a custom host with as many domains as a test
needs, running or shut off, with or without a balloon::

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_node_xml(d / "node.xml", [domain_xml("web01", current_mib=3072)]).startswith("test:///")
    True
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

__all__ = ["domain_xml", "fleet", "write_node_xml"]

_TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


def domain_xml(
    name: str,
    *,
    memory_mib: int = 4096,
    current_mib: int | None = None,
    running: bool = True,
    balloon: str = "virtio",
    period: int | None = None,
    runstate: int | None = None,
    numa_nodes: int = 0,
    max_memory_mib: int | None = None,
    devices: str = "",
    memory_backing: str = "",
) -> str:
    """One domain definition; ``running=False`` makes it shut off, ``balloon="none"`` balloon-less.

    ``runstate`` gives the test driver's ``virDomainState`` number instead (3 paused, 5 shut
    off, 6 crashed, 7 pmsuspended): the test driver keeps every state but shut off active.
    ``numa_nodes`` splits the memory into that many guest NUMA cells (``<cpu><numa>``), one vCPU
    each (libvirt requires the cells to add up to ``<memory>``). ``max_memory_mib`` gives the
    hotplug ceiling, ``<maxMemory slots='4'>`` (the test driver wants no NUMA cell with it; QEMU
    wants one). ``devices`` is device XML put before the balloon (a ``<hostdev>``, …).
    ``memory_backing`` is the content of ``<memoryBacking>`` (``<hugepages/>``, …), none if empty.
    """
    stats = f"<stats period='{period}'/>" if period is not None else ""
    if runstate is None and not running:
        runstate = 5
    state = f"<test:runstate>{runstate}</test:runstate>" if runstate is not None else ""
    cpu = vcpu = ""
    if numa_nodes:
        size = memory_mib // numa_nodes
        cells = "".join(f"<cell id='{i}' cpus='{i}' memory='{size}' unit='MiB'/>" for i in range(numa_nodes))
        cpu, vcpu = f"<cpu><numa>{cells}</numa></cpu>", f"<vcpu>{numa_nodes}</vcpu>"
    return (
        f"<domain type='test' xmlns:test='{_TEST_NS}'><name>{escape(name)}</name>"
        + (f"<maxMemory slots='4' unit='MiB'>{max_memory_mib}</maxMemory>" if max_memory_mib else "")
        + f"<memory unit='MiB'>{memory_mib}</memory>"
        f"<currentMemory unit='MiB'>{current_mib or memory_mib}</currentMemory>"
        + (f"<memoryBacking>{memory_backing}</memoryBacking>" if memory_backing else "")
        + f"{vcpu}{cpu}"
        "<os><type>hvm</type></os>"
        f"<devices>{devices}<memballoon model='{balloon}'>{stats}</memballoon></devices>{state}</domain>"
    )


def write_node_xml(path: Path, domains: list[str]) -> str:
    """Write a test-driver host with these domain definitions; its ``test:///`` URI."""
    path.write_text("<node>\n" + "\n".join(domains) + "\n</node>\n")
    return f"test://{path}"


def fleet(n: int) -> list[str]:
    """``n`` running 4 GiB domains, balloons at 2-4 GiB (the sweep benchmark uses 1,000)."""
    return [domain_xml(f"vm{i:04d}", current_mib=2048 + (i % 5) * 512) for i in range(n)]
