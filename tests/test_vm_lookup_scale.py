"""Naming many VMs the session has not seen costs one pass over the hypervisor's answer, not
one per name: ``autoballoon --once`` on a 10,000-VM host took 28 times as long as on 1,000."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import hvballoon
from hvballoon.models import VM


class _Counted(list[VM]):
    """A look-up's answer that counts the passes made over it."""

    passes = 0

    def __iter__(self) -> Iterator[VM]:
        type(self).passes += 1
        return super().__iter__()


def test_a_look_up_of_many_names_reads_the_answer_a_fixed_number_of_times() -> None:
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        backend: Any = hv.backend
        native = backend.lookup_vms

        def lookup(refs: Sequence[str]) -> list[VM]:
            return _Counted(native(refs))

        backend.lookup_vms = lookup
        with hvballoon.connect("fake://seed?flavor=esxi") as other:
            names = [vm.name for vm in other.list_vms()]
        assert len(names) == 10
        stats = hv.get_stats(names)  # a fresh session: every name is looked up, in one call
        assert [s.vm.name for s in stats] == names
        # a pass or two to remember the answer, not one per name looked up
        assert _Counted.passes <= 3, _Counted.passes


class _Watched:
    """A VM whose id counts how often it is read."""

    reads = 0

    def __init__(self, vm: VM) -> None:
        self._vm = vm

    @property
    def id(self) -> str:
        type(self).reads += 1
        return self._vm.id


def test_finding_many_vms_reads_each_id_a_fixed_number_of_times() -> None:
    # find_vms checked each VM against every VM found before it: 10,000 names, 50 million reads
    with hvballoon.connect("fake://seed") as hv:
        resolve = hv._resolve
        vms = hv.list_vms()
        many = [VM(id=f"id{i}", name=f"vm{i}", backend="fake") for i in range(2000)]

        def watched(refs: Sequence[Any]) -> list[Any]:
            return [r._replace(vm=_Watched(r.vm)) if isinstance(r, tuple) else r for r in resolve(refs)]

        hv._resolve = watched  # type: ignore[method-assign]
        found, missing = hv.find_vms([*many, vms[0], vms[0].id, "nowhere", "nowhere"])
    assert len(found) == 2001 and missing == ["nowhere"]
    assert _Watched.reads <= 3 * len(found), _Watched.reads
