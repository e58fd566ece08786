"""A domain with a device assigned through VFIO-PCI: QEMU pins all its memory and its balloon
gives the host nothing back, so the controller never lowers it (docs/backends/kvm.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

import hvballoon
from hvballoon.backends.kvm._domain import parse_domain_xml
from hvballoon.policy import Controller, ControllerSettings
from tests.support.cli import invoke, stats_frees_nothing
from tests.support.libvirt_xml import domain_xml, write_node_xml
from tests.support.policies import Fixed

pytest.importorskip("libvirt")

GiB = 2**30

_ADDRESS = "<address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>"
#: a GPU passed through the usual way: libvirt's default driver for a PCI hostdev is VFIO
GPU = f"<hostdev mode='subsystem' type='pci' managed='yes'><source>{_ADDRESS}</source></hostdev>"
GPU_VFIO = (
    "<hostdev mode='subsystem' type='pci' managed='yes'><driver name='vfio'/>"
    f"<source>{_ADDRESS}</source></hostdev>"
)
MDEV_PCI = (
    "<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>"
    "<address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>"
)
MDEV_CCW = (
    "<hostdev mode='subsystem' type='mdev' model='vfio-ccw'><source>"
    "<address uuid='c2177883-f1bb-47f0-914d-32a22e3a8805'/></source></hostdev>"
)
NIC_VF = (
    "<interface type='hostdev' managed='yes'><driver name='vfio'/>"
    "<source><address type='pci' domain='0x0000' bus='0x04' slot='0x10' function='0x1'/></source></interface>"
)
USB = (
    "<hostdev mode='subsystem' type='usb' managed='yes'><source><vendor id='0x1234'/>"
    "<product id='0xbeef'/></source></hostdev>"
)
LEGACY_KVM = f"<hostdev mode='subsystem' type='pci' managed='yes'><driver name='kvm'/><source>{_ADDRESS}</source></hostdev>"


def _parse(devices: str) -> int:
    return parse_domain_xml(
        f"<domain><memory>1048576</memory><devices>{devices}<memballoon model='virtio'/></devices></domain>"
    ).vfio_devices


@pytest.mark.parametrize(
    ("devices", "count"),
    [
        ("", 0),
        (GPU, 1),
        (GPU_VFIO, 1),
        (MDEV_PCI, 1),
        (NIC_VF, 1),
        (GPU + NIC_VF + MDEV_PCI, 3),
        # QEMU leaves discarding on for a vfio-ccw / vfio-ap mdev; USB is not VFIO; the old KVM
        # assignment driver is not VFIO
        (MDEV_CCW, 0),
        (USB, 0),
        (LEGACY_KVM, 0),
        ("<interface type='network'><source network='default'/></interface>", 0),
    ],
)
def test_the_domain_xml_says_which_devices_are_assigned_through_vfio_pci(devices: str, count: int) -> None:
    assert _parse(devices) == count


def _host(tmp_path: Path) -> str:
    return write_node_xml(
        tmp_path / "node.xml",
        [
            domain_xml("gpu01", memory_mib=4096, period=2, devices=GPU),
            domain_xml("nic01", memory_mib=4096, period=2, devices=NIC_VF),
            domain_xml("web01", memory_mib=4096, period=2, devices=USB),
        ],
    )


def test_the_config_of_a_domain_with_a_vfio_device_says_so(tmp_path: Path) -> None:
    """libvirt's test driver keeps a defined domain's ``<hostdev>`` and ``<interface
    type='hostdev'>``; the backend reads them into ``MemoryConfig.extra``."""
    with hvballoon.connect(_host(tmp_path)) as hv:
        configs = {c.vm.name: c for c in hv.get_configs()}
    assert configs["gpu01"].extra["vfio_devices"] == 1
    assert configs["nic01"].extra["vfio_devices"] == 1
    assert configs["web01"].extra["vfio_devices"] == 0


def test_the_controller_never_lowers_a_domain_whose_balloon_frees_nothing(tmp_path: Path) -> None:
    """Whatever the policy: a lower would take the guest's memory and give the host none. The
    domain without VFIO is lowered as before; raising the pinned one is still allowed."""
    with hvballoon.connect(_host(tmp_path)) as hv:
        settings = ControllerSettings(host_memory_bytes=64 * GiB)
        d = {x.vm: x for x in Controller(hv, Fixed(2 * GiB), settings).step()}
        for name in ("gpu01", "nic01"):
            assert d[name].action == "hold", d[name]
            assert d[name].rule == "controller.balloon_frees_nothing"
            assert "VFIO" in d[name].reason and "gives the host nothing back" in d[name].reason
        assert d["web01"].action == "lower"
        assert {st.vm.name: st.target_bytes for st in hv.get_stats(["gpu01"])}["gpu01"] in (None, 4 * GiB)
        # the policies see it as memory they cannot take back (the hvballoon policy plans its
        # reserve and headroom level on the VMs it can lower)
        views = {v.name: v for v in Controller(hv, Fixed(2 * GiB), settings).snapshot()[0].vms}
        assert not views["gpu01"].can_lower and not views["nic01"].can_lower
        assert views["web01"].can_lower and views["gpu01"].can_raise
        # a pinned domain lowered before (by hand) is raised back
        hv.set_target("gpu01", 3 * GiB)
        d = {x.vm: x for x in Controller(hv, Fixed(4 * GiB), settings).step()}
        assert d["gpu01"].action == "raise", d["gpu01"]


def test_hvballoon_config_says_its_balloon_frees_nothing_and_set_target_still_works(tmp_path: Path) -> None:
    """A user may still lower it by hand (no refusal); ``hvballoon config`` says what it gains."""
    uri = _host(tmp_path)
    shown = invoke("config", uri, "gpu01")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "note:" in shown.stdout and "gives the host nothing back" in shown.stdout
    plain = invoke("config", uri, "web01")
    assert plain.returncode == 0 and "note:" not in plain.stdout
    with hvballoon.connect(uri) as hv:
        hv.set_target("gpu01", 3 * GiB)
        (st,) = hv.get_stats(["gpu01"])
    assert st.target_bytes == 3 * GiB


def test_hvballoon_stats_marks_a_domain_whose_balloon_frees_nothing(tmp_path: Path) -> None:
    """``hvballoon stats`` marks the domains with VFIO devices (a cell and a footnote; in
    ``--json`` their ``extra["frees_nothing_note"]``), as on the fake."""
    rows, footnotes, notes = stats_frees_nothing(_host(tmp_path))
    for name in ("gpu01", "nic01"):
        assert "frees nothing*" in rows[name], rows
        assert notes[name] is not None and "VFIO" in notes[name]
    assert "frees nothing" not in rows["web01"] and notes["web01"] is None
    assert len(footnotes) == 1 and footnotes[0].startswith("* frees nothing:") and "VFIO" in footnotes[0]
