"""``proxmox``: Proxmox VE's automatic memory allocation (pvestatd's auto-ballooning), reproduced.

Every 10 s Proxmox computes ``goal = host total × target% − host used`` (target 80 % by
default). A goal within ±10 MiB does nothing. Otherwise the goal is shared out over the VMs
that have a running balloon driver, a minimum (Proxmox's ``balloon`` setting) and non-zero
shares, in proportion to their shares above their minimum: a VM is steered towards
``minimum + (allocated above minimums + goal) × shares / total shares``, clamped to
[minimum, maximum], moving at most 100 MiB per round from where its balloon is. Growth goes
first to the VMs under memory pressure, shrinking first to the VMs with free memory (more
than a quarter of their minimum free); only when that makes no progress are all VMs
considered — which is how a VM already short of memory can be squeezed to its minimum.

:func:`proxmox_round` is a port of that algorithm (``compute_alg1``) on plain numbers;
:class:`ProxmoxPolicy` feeds it from a snapshot.

>>> MB = 1000**2
>>> vms = {
...     "100": ProxmoxVM(balloon=1000 * MB, balloon_min=1000 * MB, maxmem=2000 * MB, shares=2000),
...     "101": ProxmoxVM(balloon=1000 * MB, balloon_min=1000 * MB, maxmem=2000 * MB, shares=1000),
... }
>>> {k: v // MB for k, v in proxmox_round(vms, 90 * MB, max_change=100 * MB).items()}
{'100': 1060, '101': 1030}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hvballoon.policy.base import Plan, Policy
from hvballoon.policy.model import Proposal, Snapshot
from hvballoon.units import MiB, format_size

__all__ = ["ProxmoxPolicy", "ProxmoxVM", "eligible", "proxmox_round"]

DEFAULT_SHARES = 1000


@dataclass(frozen=True)
class ProxmoxVM:
    """One VM as Proxmox's status collector reports it (bytes).

    ``balloon`` is the balloon's actual size now (0: no driver), ``balloon_min`` the configured
    minimum (0: not set), ``freemem`` the guest's free memory, ``shares`` ``None`` for the
    default (1000) and 0 to opt out.
    """

    balloon: int
    balloon_min: int
    maxmem: int
    freemem: int = 0
    shares: int | None = None
    migrating: bool = False

    @property
    def weight(self) -> int:
        return self.shares or DEFAULT_SHARES


def eligible(vms: Mapping[str, ProxmoxVM]) -> tuple[list[str], list[str], list[str]]:
    """``(all, under pressure, with free memory)`` — the three lists the algorithm works on."""
    every, pressure, roomy = [], [], []
    for key, vm in vms.items():
        if not vm.balloon or not vm.balloon_min or vm.migrating or vm.shares == 0:
            continue
        every.append(key)
        if vm.freemem and vm.freemem > vm.balloon_min * 0.25 and vm.balloon >= vm.balloon_min:
            roomy.append(key)
        else:
            pressure.append(key)
    return every, pressure, roomy


def _share_out(
    vms: Mapping[str, ProxmoxVM], result: dict[str, int], keys: Iterable[str], amount: int, max_change: int
) -> int:
    """Move ``keys`` towards their shares of ``amount``; returns what is left of it."""
    keys = list(keys)
    left = amount
    settled: set[str] = set()
    repeat, progress = True, 1
    while left and repeat and progress:
        repeat, progress = False, 0
        active = [k for k in keys if k not in settled]
        weight_total = sum(vms[k].weight for k in active)
        above_min = sum(result.get(k, vms[k].balloon) - vms[k].balloon_min for k in active)
        wanted = above_min + left
        moved = 0
        for k in active:
            vm = vms[k]
            desired = vm.balloon_min + int((wanted / weight_total) * vm.weight)
            if desired > vm.maxmem:
                desired, repeat = vm.maxmem, True
            elif desired < vm.balloon_min:
                desired, repeat = vm.balloon_min, True
            gap = desired - vm.balloon
            # every step is measured from where the balloon is, so a VM moves at most
            # max_change per round however many times this loop comes back to it
            if amount > 0 and gap > 0:
                new = min(vm.balloon + max_change, desired)
            elif gap < 0:
                new = max(vm.balloon - max_change, desired)
            else:
                settled.add(k)
                continue
            if new == vm.balloon:
                continue
            step = new - result.get(k, vm.balloon)
            result[k] = new
            if step:
                moved += step
                progress += abs(new - vm.balloon)
                repeat = True
        left -= moved
    return left


def proxmox_round(
    vms: Mapping[str, ProxmoxVM], goal: int, *, max_change: int = 100 * MiB, deadband: int = 10 * MiB
) -> dict[str, int]:
    """One round of Proxmox's auto-ballooning: ``{vm: new balloon size}`` for the VMs to move.

    ``goal`` is the memory to hand out (positive) or take back (negative), in bytes.
    """
    every, pressure, roomy = eligible(vms)
    result: dict[str, int] = {}
    if goal > deadband:
        left = _share_out(vms, result, pressure, goal, max_change)
        if left >= goal:  # nobody under pressure could take any: share out to all
            _share_out(vms, result, every, left, max_change)
    elif goal < -deadband:
        left = _share_out(vms, result, roomy, goal, max_change)
        if left <= goal:  # nobody with free memory could give any: take from all
            _share_out(vms, result, every, left, max_change)
    return result


class ProxmoxPolicy(Policy):
    """Proxmox's auto-ballooning. ``target_percent`` is the node's ``ballooning-target``.

    Proxmox only balloons VMs that have a minimum (its per-VM ``balloon`` setting). Here a VM's
    minimum is its floor (or the hypervisor's minimum); a VM with neither gets
    ``default_minimum_fraction`` of its maximum (``None``: skipped, as Proxmox does).
    """

    name = "proxmox"
    summary = "Proxmox VE auto-ballooning (host use target 80 %, shares, ≤ 100 MiB per VM per round)"
    #: qemu-server sets guest-stats-polling-interval to 2 s at VM start
    stats_period_seconds = 2

    def __init__(
        self,
        *,
        target_percent: float = 80.0,
        max_change_bytes: int = 100 * MiB,
        deadband_bytes: int = 10 * MiB,
        default_minimum_fraction: float | None = 0.5,
    ) -> None:
        if not 0 < target_percent <= 100:
            raise ValueError("target_percent is in (0, 100]")
        if default_minimum_fraction is not None and not 0 <= default_minimum_fraction <= 1:
            raise ValueError("default_minimum_fraction is in [0, 1]")
        self.target_percent = target_percent
        self.max_change_bytes = max_change_bytes
        self.deadband_bytes = deadband_bytes
        self.default_minimum_fraction = default_minimum_fraction

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        host = snapshot.host
        goal = int(host.total_bytes * self.target_percent / 100) - host.used_bytes
        vms: dict[str, ProxmoxVM] = {}
        for v in snapshot.vms:
            minimum = v.minimum_bytes
            if not minimum and self.default_minimum_fraction is not None:
                minimum = int(v.maximum_bytes * self.default_minimum_fraction)
            reporting = v.running and not v.stale and v.unused_bytes is not None
            vms[v.id] = ProxmoxVM(
                balloon=v.current_bytes if reporting else 0,
                balloon_min=minimum,
                maxmem=v.maximum_bytes,
                freemem=v.unused_bytes or 0,
                shares=v.settings.shares,
            )
        moves = proxmox_round(vms, goal, max_change=self.max_change_bytes, deadband=self.deadband_bytes)
        every_list, pressure_list, _ = eligible(vms)
        every, pressure = set(every_list), set(pressure_list)  # looked up once per VM
        direction = (
            "grow" if goal > self.deadband_bytes else "shrink" if goal < -self.deadband_bytes else "hold"
        )
        proposals = []
        for v in snapshot.vms:
            vm = vms[v.id]
            inputs = {
                "goal_bytes": goal,
                "host_used_bytes": host.used_bytes,
                "host_total_bytes": host.total_bytes,
                "balloon_min_bytes": vm.balloon_min,
                "freemem_bytes": vm.freemem,
                "shares": vm.weight,
                "under_pressure": v.id in pressure,
            }
            if v.id not in every:
                why = (
                    "no balloon statistics"
                    if not vm.balloon
                    else "no minimum set"
                    if not vm.balloon_min
                    else "shares are 0"
                )
                proposals.append(
                    Proposal(
                        vm_id=v.id,
                        rule="proxmox.ineligible",
                        reason=f"not auto-ballooned: {why}",
                        inputs=inputs,
                    )
                )
                continue
            goal_text = (
                f"host uses {format_size(host.used_bytes)} of {format_size(host.total_bytes)}, "
                f"goal {'+' if goal >= 0 else '-'}{format_size(abs(goal))} to reach {self.target_percent:g} %"
            )
            if v.id in moves:
                proposals.append(
                    Proposal(
                        vm_id=v.id,
                        target_bytes=moves[v.id],
                        rule=f"proxmox.{direction}",
                        reason=f"{goal_text}: share by {vm.weight} shares above the minimum "
                        f"{format_size(vm.balloon_min)}, at most {format_size(self.max_change_bytes)} per round",
                        inputs=inputs,
                    )
                )
            else:
                proposals.append(
                    Proposal(
                        vm_id=v.id,
                        rule="proxmox.hold",
                        reason=f"{goal_text}: "
                        + (
                            "within the ±10 MiB dead-band"
                            if direction == "hold"
                            else "this VM is already at its share"
                        ),
                        inputs=inputs,
                    )
                )
        return Plan(tuple(proposals), state)
