"""A KVM domain whose balloon gives its host nothing back, in the fake as on libvirt, whichever
backing makes it so: a device assigned through VFIO (QEMU pins all its memory for the device's
DMA and turns off discarding guest RAM) or huge pages (its memory comes from the host's huge-page
pool; QEMU discards a huge page only once the balloon holds all of it, and then into the pool).
Either way the balloon takes memory from the guest and gives the host none, the host never swaps
that memory out, and the controller holds the VM as it does on libvirt's test driver."""

from __future__ import annotations

from typing import Any

import pytest

import hvballoon
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from hvballoon.policy import Controller, ControllerSettings
from tests.support.policies import Fixed

GiB = 2**30

#: (the VM, its backing in the scenario, words the controller's reason holds)
BACKINGS = [
    pytest.param("gpu01", {"vfio_devices": 1}, "VFIO", id="vfio"),
    pytest.param("nfv01", {"hugepages": "2MiB"}, "huge pages", id="hugepages"),
]


def _world(name: str, backing: dict[str, Any], physical: str = "32GiB") -> World:
    vms = [
        {"name": name, "memory": "8GiB", "used": "2GiB", **backing},
        {"name": "web01", "memory": "8GiB", "used": "2GiB"},
    ]
    host = {"physical": physical, "overhead": "1GiB", "swap": "8GiB"}
    return World(parse_scenario({"name": "pinned", "flavor": "kvm", "host": host, "vms": vms}), strict=True)


@pytest.mark.parametrize(("name", "backing", "words"), BACKINGS)
def test_its_balloon_takes_from_the_guest_and_gives_the_host_nothing(
    name: str, backing: dict[str, Any], words: str
) -> None:
    w = _world(name, backing)
    w.advance(30)
    held, web = w.guest(name), w.guest("web01")
    assert held.host_backed_bytes == 8 * GiB  # backed whole from the start, used or not
    assert web.host_backed_bytes < 8 * GiB  # what the guest touched (free page reporting)
    with hvballoon.connect("fake://", world=w) as hv:
        before = w.host_free_bytes
        hv.set_target(name, 4 * GiB)
        w.advance(60)
        assert held.current_bytes == 4 * GiB  # the guest lost it
        assert w.host_free_bytes == before  # the host gained nothing
        assert held.host_backed_bytes == 8 * GiB


@pytest.mark.parametrize(("name", "backing", "words"), BACKINGS)
def test_the_host_never_swaps_its_memory(name: str, backing: dict[str, Any], words: str) -> None:
    # 10 GiB for the VMs' 16 GiB: the host swaps what is neither pinned nor huge pages
    w = _world(name, backing, physical="11GiB")
    with hvballoon.connect("fake://", world=w) as hv:
        hv.set_target("web01", 8 * GiB)
        w.advance(120)
    assert w.guest(name).host_swapped_bytes == 0
    assert w.guest("web01").host_swapped_bytes > 0


@pytest.mark.parametrize(("name", "backing", "words"), BACKINGS)
def test_the_controller_holds_it_as_on_libvirt(name: str, backing: dict[str, Any], words: str) -> None:
    with hvballoon.connect("fake://", world=_world(name, backing)) as hv:
        settings = ControllerSettings(host_memory_bytes=32 * GiB)
        d = {x.vm: x for x in Controller(hv, Fixed(2 * GiB), settings).step()}
    assert d[name].action == "hold" and d[name].rule == "controller.balloon_frees_nothing"
    assert words in d[name].reason
    assert d["web01"].action == "lower"
