"""The fake looks VMs up by name from an index the world keeps, not by a pass over every VM:
``lookup_vms`` of a few names on a host of thousands costs the names, as a real backend's native
look-up does. Counted, never timed: the guests visited per look-up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hvballoon
from hvballoon.fake.scenario import HostSpec, Scenario, VMSpec
from hvballoon.fake.world import World

GiB = 1024**3


def _world(n: int) -> World:
    vms = [VMSpec(name=f"vm{i:05d}", memory=4 * GiB, used=GiB) for i in range(n)]
    vms.append(VMSpec(name="vm00001", memory=4 * GiB, used=GiB))  # a name two VMs share
    return World(Scenario(name=f"many{n}", seed=1, host=HostSpec(name="h", physical=8 * GiB * n), vms=vms))


class _Visits(dict[str, Any]):
    """The world's guests, counting each one handed out by a pass over them."""

    visits = 0

    def values(self) -> Any:
        return self._counted(super().values())

    def items(self) -> Any:
        return self._counted(super().items())

    def __iter__(self) -> Iterator[str]:
        return self._counted(super().__iter__())

    def _counted(self, it: Any) -> Iterator[Any]:
        for x in it:
            type(self).visits += 1
            yield x


def test_a_look_up_by_name_visits_the_vms_named_not_every_vm() -> None:
    world = _world(2000)
    world.guests = _Visits(world.guests)
    with hvballoon.connect("fake://", world=world) as hv:
        backend: Any = hv.backend
        by_id = world.guest("vm00007").id
        found = backend.lookup_vms(["vm00001", "vm01999", by_id, "nowhere", "vm00001"])
    assert [vm.name for vm in found] == ["vm00001", "vm00007", "vm01999", "vm00001"]
    assert _Visits.visits <= 10, _Visits.visits


def test_the_index_follows_renames() -> None:
    world = _world(5)
    g = world.guest("vm00002")
    world.rename(g.id, "db01")
    with hvballoon.connect("fake://", world=world) as hv:
        backend: Any = hv.backend
        assert [vm.id for vm in backend.lookup_vms(["db01"])] == [g.id]
        assert backend.lookup_vms(["vm00002"]) == []
        # a rename onto a name another VM has: both are found, in the world's order
        world.rename(g.id, "vm00004")
        assert [vm.name for vm in backend.lookup_vms(["vm00004"])] == ["vm00004", "vm00004"]
        assert backend.lookup_vms(["vm00004"])[0].id == g.id
        # one of the two VMs of a shared name renamed away: the other is still found by it
        shared = world.named("vm00001")
        world.rename(shared[0].id, "web01")
        assert [vm.id for vm in backend.lookup_vms(["vm00001"])] == [shared[1].id]
        assert world.guest("web01") is shared[0]
    assert world.named("db01") == []


def test_a_vm_deleted_is_not_found() -> None:
    world = _world(5)
    g = world.guest("vm00003")
    world.vanish(g.id)
    with hvballoon.connect("fake://", world=world) as hv:
        backend: Any = hv.backend
        assert backend.lookup_vms(["vm00003", g.id]) == []
        assert [vm.name for vm in backend.lookup_vms(["vm00000"])] == ["vm00000"]
