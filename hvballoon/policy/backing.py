"""How the ``hvballoon`` policy keeps its raises within what the host can back.

A raise is not free: on KVM it lets the guest touch more pages, which the host backs out of its
free memory, then its swap, and once the swap is full its OOM killer kills a whole VM (the one
holding the most, not necessarily the one raised); on ESXi a raised limit lets the VM claim
memory that the others then lose to ESXi's balloon. So the raises that no surge calls for — a VM
whose use has reached into its headroom or that is given headroom back (rule
``hvballoon.raise``), and a VM given its size back because the host looks able to hold every VM
whole (``hvballoon.uncommitted``) — are granted only out of what the host can back: its free
memory above its floor and a band (``wave_floor_fraction`` and ``band_fraction`` of its memory),
after what the round's other raises take. Each costs its whole size (a guest's page cache fills
what its use does not). They share it out, the most urgent first (the least headroom left for
its use, as a share of its floor headroom): one that does not fit gets what is left, if that is
at least half ``min_deadband_bytes``, and is asked for again later; the others are held (rule
``hvballoon.unbackable``, not remembered as raised, so asked for again next round). A VM whose
use jumps, that swaps in or has almost nothing left is *surging* (``hvballoon.surge``) and gets
its memory back whatever the host has: its guest is about to swap or lose a process. Neither
are the wave and late-round raises bounded here (they are dealt out of the host's free memory
already), nor the self-managed VMs', nor a Dynamic Memory maximum (Hyper-V hands a raised
maximum only what it has free).

A mixin of :class:`~hvballoon.policy.adaptive.HvballoonPolicy` (``hold_unbacked_raises``, off by
default: measured, see docs/policies.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hvballoon.models import Mechanism
from hvballoon.policy.history import _Figures
from hvballoon.policy.model import HostView, Proposal
from hvballoon.units import format_size

__all__ = ["Backing"]

#: the rules whose raises are bounded by what the host can back
_BOUNDED = ("hvballoon.raise", "hvballoon.uncommitted")
#: the rule of a raise held because the host could not back it
HELD = "hvballoon.unbackable"


class Backing:
    """The bound on raises a host cannot back (see the module docstring)."""

    hold_unbacked_raises: bool
    min_deadband_bytes: int

    if TYPE_CHECKING:  # provided by Reserving

        def _room(self, host: HostView) -> int: ...

    def _bound_raises(
        self, proposals: list[Proposal], figures: dict[str, _Figures], host: HostView
    ) -> set[str]:
        """Bound this round's raises by what the host can back (the module docstring): the
        proposals are replaced in ``proposals`` (a raise cut to what is left, or a hold); returns
        the VMs held (their raise not made). Nothing changes when ``hold_unbacked_raises`` is off."""
        if not self.hold_unbacked_raises:
            return set()
        budget = self._room(host)
        bounded = []
        for i, p in enumerate(proposals):
            f = figures.get(p.vm_id)
            if f is None or p.target_bytes is None or p.target_bytes <= f.view.target_bytes:
                continue
            if f.view.mechanism is Mechanism.DYNAMIC_MEMORY:
                continue  # Hyper-V hands a raised maximum only what it has free
            # what the raise lets the guest touch: its page cache fills what its use does not
            cost = p.target_bytes - f.view.target_bytes
            if p.rule not in _BOUNDED:
                budget -= cost  # surges, waves, late rounds, self-managed VMs: their own rules
                continue
            left = min(f.available, f.view.target_bytes - f.used)
            bounded.append((left / max(f.floor_headroom, 1), p.vm_id, i, cost))
        held: set[str] = set()
        for _, vm_id, i, cost in sorted(bounded):
            if cost <= budget:
                budget -= cost
                continue
            p = proposals[i]
            inputs = {**p.inputs, "host_backed_cost_bytes": cost, "host_raise_budget_bytes": max(0, budget)}
            if budget >= self.min_deadband_bytes // 2:
                # what the host can back of it, now; the rest when the host has it
                proposals[i] = Proposal(
                    vm_id=vm_id,
                    target_bytes=figures[vm_id].view.target_bytes + budget,
                    rule=p.rule,
                    reason=(
                        f"{p.reason}; only {format_size(budget)} of the {format_size(cost)} made: what the "
                        "host can back above its floor after the round's other raises"
                    ),
                    inputs=inputs,
                )
                budget = 0
                continue
            proposals[i] = Proposal(
                vm_id=vm_id,
                rule=HELD,
                reason=(
                    f"{p.reason}; not made: the host cannot back it ({format_size(cost)} more to back, "
                    f"{format_size(max(0, budget))} free above its floor after the round's other raises): "
                    "a raise it cannot back makes it swap, then kill a whole VM"
                ),
                inputs=inputs,
            )
            held.add(vm_id)
        return held
