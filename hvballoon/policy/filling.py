"""Whether a lower of the ``hvballoon`` policy would free memory the host backs.

A lower takes memory out of a guest; what it gives the host is only what the host backs for that
VM above the new target: its use and its page cache, as the host sees them (with free page
reporting, or on a fresh VM, a guest's unused memory costs the host nothing), and what its page
cache would fill again (the most it has held within ``appetite_seconds``). A lower to a target
above that frees nothing now and caps only a page cache the VM has not shown, while the memory
it takes is headroom the guest no longer has: a surge beyond the plausible one, faster than a
round (a rise within a second or two), finds it gone, where ``static`` leaves it in the guest.

With ``hold_unfilled_lowers`` a lower is made only when it frees at least half
``min_deadband_bytes`` of that (rule ``hvballoon.unfilled`` otherwise): the VM keeps its target
until its page cache grows toward it, and is lowered then. Found on random scenarios: an idle
1.9 GiB KVM VM using 0.12 GiB, backed for 0.31 GiB (free page reporting), lowered to 1.25 GiB at
the first round of a host 119 GiB short of its reserve, rose by 82 % of its size within half a
second and lost a process, which ``static`` did not (``python benchmarks/random_scenarios.py
--first 10043 --seeds 1 --minutes 20``); and a 427 GiB VM on a roomy host, lowered to 296 GiB
while the host backed 186 GiB of it, rising by 77 % within five seconds (seed 1095).

A mixin of :class:`~hvballoon.policy.adaptive.HvballoonPolicy` (``hold_unfilled_lowers``;
measured, see docs/policies.md).
"""

from __future__ import annotations

from hvballoon.policy.history import _Figures

__all__ = ["Filling", "UNFILLED"]

#: the rule of a lower held because it would free nothing the host backs
UNFILLED = "hvballoon.unfilled"


class Filling:
    """Lowers that would free nothing the host backs (a mixin of the ``hvballoon`` policy)."""

    min_deadband_bytes: int
    hold_unfilled_lowers: bool

    @staticmethod
    def _filled(f: _Figures) -> int:
        """What the host backs for the VM or its page cache would fill again, within its target:
        the most a lower could free."""
        appetite = f.used + f.hist.cache_bytes
        return min(f.view.target_bytes, max(f.backed, appetite))

    def _unfilled(self, f: _Figures, goal: int) -> bool:
        """Would lowering the VM to ``goal`` free less than half ``min_deadband_bytes`` of what the
        host backs for it (or its page cache would fill)?"""
        if not self.hold_unfilled_lowers:
            return False
        return self._filled(f) - goal < self.min_deadband_bytes // 2
