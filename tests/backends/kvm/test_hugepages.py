"""A domain whose memory is backed by huge pages (``<memoryBacking><hugepages>``): QEMU gives a
huge page back only once the balloon holds all of it, and a huge page it gives back returns to
the host's huge-page pool, not to its free memory; so the controller never lowers it, as it
never lowers a domain with a VFIO device (docs/backends/kvm.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hvballoon
from hvballoon.backends.kvm._domain import parse_domain_xml
from hvballoon.errors import InvalidRequestError
from hvballoon.policy import Controller, ControllerSettings
from tests.support.cli import invoke, stats_frees_nothing
from tests.support.libvirt_xml import domain_xml, write_node_xml
from tests.support.policies import Fixed

pytest.importorskip("libvirt")

GiB = 2**30
MiB = 2**20

#: the host's default huge page size (no <page>), 2 MiB pages, 1 GiB pages for guest NUMA node 0
DEFAULT = "<hugepages/>"
TWO_MIB = "<hugepages><page size='2048' unit='KiB'/></hugepages>"
ONE_GIB_NODE0 = "<hugepages><page size='1' unit='G' nodeset='0'/><page size='2' unit='M'/></hugepages>"


def _parse(backing: str) -> tuple[bool, int | None]:
    memory = f"<memoryBacking>{backing}</memoryBacking>" if backing else ""
    parsed = parse_domain_xml(
        f"<domain><memory>1048576</memory>{memory}<devices><memballoon model='virtio'/></devices></domain>"
    )
    return parsed.hugepages, parsed.hugepage_bytes


@pytest.mark.parametrize(
    ("backing", "expected"),
    [
        ("", (False, None)),
        # other memory backings are not huge pages
        ("<nosharepages/><locked/>", (False, None)),
        ("<source type='memfd'/><access mode='shared'/>", (False, None)),
        (DEFAULT, (True, None)),
        (TWO_MIB, (True, 2 * MiB)),
        (ONE_GIB_NODE0, (True, GiB)),
    ],
)
def test_the_domain_xml_says_whether_its_memory_is_backed_by_huge_pages(
    backing: str, expected: tuple[bool, int | None]
) -> None:
    assert _parse(backing) == expected


def _host(tmp_path: Path) -> str:
    return write_node_xml(
        tmp_path / "node.xml",
        [
            domain_xml("nfv01", memory_mib=4096, period=2, memory_backing=TWO_MIB),
            domain_xml("db01", memory_mib=4096, period=2, memory_backing=DEFAULT),
            domain_xml("web01", memory_mib=4096, period=2, memory_backing="<nosharepages/>"),
        ],
    )


def test_the_config_of_a_huge_page_backed_domain_says_so(tmp_path: Path) -> None:
    """libvirt's test driver keeps a defined domain's ``<memoryBacking>``; the backend reads it
    into ``MemoryConfig.extra`` (``hugepages``, ``hugepage_bytes``; neither on ordinary pages)."""
    with hvballoon.connect(_host(tmp_path)) as hv:
        configs = {c.vm.name: c for c in hv.get_configs()}
    assert (configs["nfv01"].extra["hugepages"], configs["nfv01"].extra["hugepage_bytes"]) == (True, 2 * MiB)
    assert (configs["db01"].extra["hugepages"], configs["db01"].extra["hugepage_bytes"]) == (True, None)
    assert "hugepages" not in configs["web01"].extra and "hugepage_bytes" not in configs["web01"].extra


def test_the_controller_never_lowers_a_huge_page_backed_domain(tmp_path: Path) -> None:
    """Whatever the policy: a lower would take the guest's memory and free none of the host's.
    The domain with ordinary pages is lowered as before; raising a huge-page one is allowed."""
    with hvballoon.connect(_host(tmp_path)) as hv:
        settings = ControllerSettings(host_memory_bytes=64 * GiB)
        d = {x.vm: x for x in Controller(hv, Fixed(2 * GiB), settings).step()}
        for name in ("nfv01", "db01"):
            assert d[name].action == "hold", d[name]
            assert d[name].rule == "controller.balloon_frees_nothing"
            assert "huge pages" in d[name].reason and "huge-page pool" in d[name].reason
        assert d["web01"].action == "lower"
        views = {v.name: v for v in Controller(hv, Fixed(2 * GiB), settings).snapshot()[0].vms}
        assert not views["nfv01"].can_lower and not views["db01"].can_lower
        assert views["web01"].can_lower and views["nfv01"].can_raise
        hv.set_target("nfv01", 3 * GiB)
        d = {x.vm: x for x in Controller(hv, Fixed(4 * GiB), settings).step()}
        assert d["nfv01"].action == "raise", d["nfv01"]


def test_hvballoon_config_and_stats_say_a_huge_page_backed_domain_frees_nothing(tmp_path: Path) -> None:
    uri = _host(tmp_path)
    shown = invoke("config", uri, "nfv01")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "note:" in shown.stdout and "huge pages" in shown.stdout
    assert "note:" not in invoke("config", uri, "web01").stdout
    rows, footnotes, notes = stats_frees_nothing(uri)
    for name in ("nfv01", "db01"):
        assert "frees nothing*" in rows[name], rows
        assert notes[name] is not None and "huge pages" in notes[name]
    assert "frees nothing" not in rows["web01"] and notes["web01"] is None
    assert (
        len(footnotes) == 1 and footnotes[0].startswith("* frees nothing:") and "huge pages" in footnotes[0]
    )


def test_a_maximum_below_one_huge_page_is_refused_on_the_backend_and_the_fake(tmp_path: Path) -> None:
    """QEMU does not start a domain smaller than one of its huge pages ("memory size … must be
    equal to or larger than page size …", file_ram_alloc): the KVM kind refuses such a maximum
    on a domain backed by 1 GiB pages, before anything is sent, on libvirt and on the fake
    alike; 1.5 GiB (QEMU rounds it up to whole pages) and an ordinary domain are taken."""
    gib_pages = "<hugepages><page size='1048576' unit='KiB'/></hugepages>"
    uri = write_node_xml(
        tmp_path / "gib.xml",
        [
            domain_xml("big01", memory_mib=4096, running=False, memory_backing=gib_pages),
            domain_xml("web01", memory_mib=4096, running=False),
        ],
    )
    scenario = {
        "name": "gib",
        "flavor": "kvm",
        "host": {"physical": "32GiB"},
        "vms": [
            {"name": "big01", "memory": "4GiB", "hugepages": "1GiB", "power_state": "stopped"},
            {"name": "web01", "memory": "4GiB", "power_state": "stopped"},
        ],
    }
    path = tmp_path / "gib.json"
    path.write_text(json.dumps(scenario))
    for target in (uri, f"fake://{path}"):
        with hvballoon.connect(target) as hv:
            before = hv.get_config("big01")
            for dry_run in (True, False):
                with pytest.raises(InvalidRequestError) as err:
                    hv.set_config("big01", maximum="512MiB", dry_run=dry_run)
                assert err.value.details["rule"] == "maximum_below_huge_page", target
                assert "must be equal to or larger than page size 0x40000000" in err.value.message
            assert hv.get_config("big01").maximum_bytes == before.maximum_bytes
            assert hv.set_config("big01", maximum="1536MiB").changed, target
            assert hv.set_config("web01", maximum="512MiB").changed, target
