"""The Dynamic Memory side of the ``hvballoon`` policy: buffers raised for a wave, and where a
static VM's memory would go.

Hyper-V balances a Dynamic Memory VM itself, every few seconds: it gives the VM its demand plus
its *buffer* (a percent of the demand, 20 % by default), within its minimum and maximum, and
when the host is short it trims the buffers of the lowest priorities first. A surge that rises
within seconds outruns that: between two rebalancings the guest has only its buffer, and a
buffer of a fifth of the demand is far less than a third of the VM's size. Memory the policy
could take back is not the lever here (a running VM's maximum may not be lowered); the buffer
is, and it may change while the VM runs (``Set-VMMemory -Buffer``, within
:data:`~hvballoon.kinds.hyperv.BUFFER_PERCENT_RANGE`).

So when a VM surges (after its first ``settle_seconds``: a workload starting is not a surge),
the policy raises the buffer of the other Dynamic Memory VMs of its family (VMs named alike and
of the same size: a wave takes a fleet of alike VMs, and the one surging is being given its
memory already) to cover their plausible surge — ``buffer = plausible surge / demand``, never
below the buffer a VM had —, out of the host's free memory above its floor and band, less what
the surging VMs may still take and what Dynamic Memory is about to hand out anyway. A raise that
cannot cover half of a VM's plausible surge is not made (it protects little and takes what other
VMs' surges need), nor one that adds less than a move of the policy is worth. Each VM gets its
own buffer back once its family has been calm for ``calm_seconds`` (and not within
``calm_seconds`` of its raise), and is not raised again within ``calm_seconds`` of that unless
its own use rose: calm hands, as for every move of the policy.

Ahead of any surge (:meth:`Buffering._buffers_ahead`, ``buffer_ahead_fraction``): the first VM
of a wave rises before a sibling has surged to call for its buffer, so a share of the host's free
memory above its floor and band, with what the buffers hold already, is dealt out as buffers,
evenly over the Dynamic Memory VMs, each up to its plausible surge; a buffer raised ahead is
never lowered (Dynamic Memory trims buffers itself, the lowest priorities first, before it takes
a VM below its demand). Not on a host with a static VM the policy may lower: the host's free
memory is what that VM's lower needs to stay free (:meth:`Buffering._static_room`), and measured
on the built-in ``hyperv-dm`` the buffers raised ahead kept it from being lowered and had the
lowest priority swap.

Measured and not kept: raising the buffers of every Dynamic Memory VM when any surges (more
kills: the buffers of VMs that do not surge take what the surging family needs), raising the
family's priority with the buffer, and a budget of half the free memory, or only of what is
above the policy's reserve (see the policies page).

What Dynamic Memory is about to hand out also decides whether a static VM beside it may be
lowered (:meth:`Buffering._static_room`): what a static VM gives up while Dynamic Memory wants
more than the host has free is the Dynamic Memory VMs' at their next rebalancing, and a raise
back finds none free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hvballoon.kinds.hyperv import BUFFER_PERCENT_RANGE, buffered_demand
from hvballoon.models import Mechanism
from hvballoon.policy.history import VMHistory, sibling_key
from hvballoon.policy.model import BufferProposal, HostView
from hvballoon.units import format_size

if TYPE_CHECKING:
    from hvballoon.policy.history import _Figures

#: The largest buffer Hyper-V takes (the session checks the range at the call too).
_MOST_PERCENT = BUFFER_PERCENT_RANGE[1]
#: The least step of a buffer raised ahead of a surge, in points of the demand.
_AHEAD_STEP_POINTS = 10


@dataclass(frozen=True)
class BufferMemo:
    """What the policy remembers of a VM whose buffer it raised: the buffer it had (given back
    after the wave), when it raised it last, and when it gave it back with the VM's use then
    (no raise again within the calm time unless the VM's own use rose)."""

    own: int
    raised_at: float | None = None
    lowered_at: float | None = None
    lowered_used_bytes: int = 0


class Buffering:
    """The buffers of the Dynamic Memory VMs; :class:`~hvballoon.policy.adaptive.HvballoonPolicy`
    is one."""

    calm_seconds: float
    settle_seconds: float
    surge_after_seconds: float
    min_deadband_bytes: int
    buffer_ahead_fraction: float

    def _buffers(
        self,
        figures: Mapping[str, _Figures],
        histories: Mapping[str, VMHistory],
        kept: Mapping[str, BufferMemo],
        now: float,
        budget: int,
        *,
        ahead: bool = True,
    ) -> tuple[list[BufferProposal], dict[str, BufferMemo]]:
        """The buffer changes of this round, and what is remembered of the VMs whose buffer the
        policy raised (``kept``, carried in the policy's state). ``budget``: the host memory the
        raised buffers may take (its free memory above its floor and band, less the round's own
        raises); ``ahead``: raise buffers ahead of a surge too (:meth:`_buffers_ahead`)."""
        last: dict[tuple[str, int], float] = {}
        for vm_id, f in figures.items():
            h = histories.get(vm_id)
            # a rise within its first settle_seconds (a workload starting) is not a surge yet
            if h is not None and h.surge_at is not None and h.surge_at - h.first_at >= self.settle_seconds:
                key = sibling_key(f.view.name, f.view.maximum_bytes)
                last[key] = max(last.get(key, h.surge_at), h.surge_at)
        out: list[BufferProposal] = []
        # a VM without figures this round keeps what it had remembered
        still = {vm_id: m for vm_id, m in kept.items() if vm_id not in figures}
        dm = [
            f
            for f in figures.values()
            if f.view.mechanism is Mechanism.DYNAMIC_MEMORY
            and f.view.buffer_percent is not None
            and not f.view.settings.self_managed
        ]
        # the VMs surging are being given their memory already (a buffer raised now comes after
        # their rise): what they may still take is theirs, their siblings' buffers come out of
        # what is left
        rising = {
            f.view.id
            for f in dm
            if f.surging is not None
            or (f.hist.surge_at is not None and now - f.hist.surge_at < self.surge_after_seconds)
        }
        budget -= sum(f.surge for f in dm if f.view.id in rising)
        # and what Dynamic Memory is about to hand out at its next rebalancing (buffers raised in
        # the last seconds among them) is not the host's to give again
        budget -= self._pending(dm)
        for f in dm:
            v, vm_id = f.view, f.view.id
            buffer = v.buffer_percent or 0
            memo = kept.get(vm_id) or BufferMemo(own=buffer)
            at = last.get(sibling_key(v.name, v.maximum_bytes))
            hot = at is not None and now - at < self.calm_seconds
            calming = (
                memo.lowered_at is not None
                and now - memo.lowered_at < self.calm_seconds
                and f.used <= memo.lowered_used_bytes + f.floor_headroom // 2
            )
            if hot and at is not None and vm_id not in rising and not calming:
                raised = self._raise_buffer(f, buffer, memo.own, budget)
                if raised is not None:
                    want, cost = raised
                    budget -= cost
                    memo = BufferMemo(own=memo.own, raised_at=now)
                    out.append(
                        BufferProposal(
                            vm_id=vm_id,
                            buffer_percent=want,
                            rule="hvballoon.buffer",
                            reason=(
                                f"a VM of its family surged {now - at:.0f} s ago: Dynamic Memory's buffer "
                                f"raised to {want} % of its demand, its plausible surge (its own "
                                f"{memo.own} % back once the family has been calm for {self.calm_seconds:g} s)"
                            ),
                            inputs={"used_bytes": f.used, "plausible_surge_bytes": f.surge},
                        )
                    )
            elif (
                vm_id in kept
                and buffer != memo.own
                and not hot
                and (memo.raised_at is None or now - memo.raised_at >= self.calm_seconds)
            ):
                # its own buffer back (again, if the last call failed)
                memo = BufferMemo(own=memo.own, lowered_at=now, lowered_used_bytes=f.used)
                out.append(
                    BufferProposal(
                        vm_id=vm_id,
                        buffer_percent=memo.own,
                        rule="hvballoon.buffer",
                        reason=f"its family has been calm for {self.calm_seconds:g} s: its own buffer back",
                        inputs={"used_bytes": f.used, "plausible_surge_bytes": f.surge},
                    )
                )
            # remembered while raised, and for the calm time after its own buffer is back
            if (
                buffer != memo.own
                or memo.raised_at == now
                or (memo.lowered_at is not None and now - memo.lowered_at < self.calm_seconds)
            ) and (vm_id in kept or memo.raised_at == now):
                still[vm_id] = memo
        if ahead:
            out += self._buffers_ahead(dm, {p.vm_id for p in out} | set(kept), budget)
        return out, still

    def _buffers_ahead(self, dm: list[_Figures], busy: set[str], budget: int) -> list[BufferProposal]:
        """Buffers raised ahead of a surge, out of the host's free memory: of what it has free above
        its floor and band (``budget``, less what this round's raises and the surging VMs take)
        together with what the Dynamic Memory VMs' buffers hold now, ``buffer_ahead_fraction``
        is shared evenly over those VMs, each up to its plausible surge; the rest stays free.
        Only raised, never lowered (Dynamic Memory trims buffers itself, the lowest priorities
        first, when the host is short). Not on a VM surging, one whose buffer a wave raised or
        gave back (``busy``), nor by a step of less than 10 points or half ``min_deadband_bytes``."""
        if self.buffer_ahead_fraction <= 0 or budget <= 0 or not dm:
            return []
        held = sum(max(0, self._granted(f, f.view.buffer_percent or 0) - max(f.used, 1)) for f in dm)
        share = self.buffer_ahead_fraction * (budget + held) / len(dm)
        out = []
        for f in dm:
            v = f.view
            if f.surging is not None or v.id in busy:
                continue
            used, buffer = max(f.used, 1), v.buffer_percent or 0
            want = min(_MOST_PERCENT, math.ceil(100 * min(f.surge, share) / used))
            if (
                want - buffer < _AHEAD_STEP_POINTS
                or used * (want - buffer) // 100 < self.min_deadband_bytes // 2
            ):
                continue
            out.append(
                BufferProposal(
                    vm_id=v.id,
                    buffer_percent=want,
                    rule="hvballoon.buffer_ahead",
                    reason=(
                        f"ahead of a surge: Dynamic Memory's buffer raised to {want} % of its demand, its "
                        f"share of the host's free memory (its plausible surge {format_size(f.surge)} at most)"
                    ),
                    inputs={
                        "used_bytes": f.used,
                        "plausible_surge_bytes": f.surge,
                        "host_room_bytes": budget,
                    },
                )
            )
        return out

    def _raise_buffer(self, f: _Figures, buffer: int, own: int, budget: int) -> tuple[int, int] | None:
        """The buffer that covers the VM's plausible surge (never below its own), as far as
        ``budget`` lets Dynamic Memory add it, and what it costs the host; ``None`` when that
        covers less than half the surge (it protects little and takes what other VMs' surges
        need) or adds too little to be worth a call (one step that matters, not a little more
        each round as the host frees memory)."""
        v = f.view
        used = max(f.used, 1)
        want = min(_MOST_PERCENT, max(own, math.ceil(100 * f.surge / used)))
        has = max(v.current_bytes, self._granted(f, buffer))
        if self._granted(f, want) - has > budget:
            want = max(own, (has + max(budget, 0) - used) * 100 // used)
        adds = used * (want - buffer) // 100
        if adds < max(self.min_deadband_bytes, f.surge // 4) or 2 * (used * want // 100) < f.surge:
            return None
        return want, max(0, self._granted(f, want) - has)

    def _static_room(self, figures: Mapping[str, _Figures], host: HostView) -> int | None:
        """The host's free memory above its own reserve less what Dynamic Memory is about to
        hand out (:meth:`_pending`), and the static Hyper-V VMs marked ``unbacked`` when it is
        negative; ``None`` on a host without a static VM with figures.

        A static VM is resized at run time only with the memory free on the host, and Dynamic
        Memory hands what is free above the host's reserve to its VMs whose demand plus buffer
        exceeds what they are assigned, every few seconds, and keeps it while their demand
        lasts. So memory a static VM gives up while Dynamic Memory wants more than the host has
        free is the Dynamic Memory VMs' by its next rebalancing, and a raise back finds none
        free: the guest has only what it was left. While the host has that much free (what is
        given up then stays free), a static VM is lowered as any other."""
        static = [f for f in figures.values() if f.view.mechanism is Mechanism.RUNTIME_RESIZE]
        if not static:
            return None
        dm = [
            f
            for f in figures.values()
            if f.view.mechanism is Mechanism.DYNAMIC_MEMORY and f.view.buffer_percent is not None
        ]
        room = host.free_bytes - host.reserve_bytes - self._pending(dm)
        for f in static:
            f.unbacked = room < 0
        return room

    def _pending(self, dm: Iterable[_Figures]) -> int:
        """What Dynamic Memory is about to hand out to the VMs ``dm`` (Dynamic Memory VMs) at its
        next rebalancing, out of the host's free memory: their demand plus buffer, within their
        range, beyond what they are assigned now."""
        return sum(max(0, self._granted(f, f.view.buffer_percent or 0) - f.view.current_bytes) for f in dm)

    @staticmethod
    def _granted(f: _Figures, buffer: int) -> int:
        """What Dynamic Memory gives the VM with ``buffer``: its demand plus that share of it,
        within its range."""
        v = f.view
        return int(buffered_demand(max(f.used, 1), buffer, v.minimum_bytes, v.maximum_bytes))
