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
